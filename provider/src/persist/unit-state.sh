# shellcheck shell=sh
# Probes ask systemd once about every unit they read: a systemctl costs a booted host 5-8 ms of
# CPU (PID 1's share included), and one about two units hardly more. `ask_units UNIT...` asks
# `systemctl is-active`; `ask_units --pid UNIT...` asks `systemctl show` for the state and MainPID
# (more work for PID 1, less than a second systemctl). Then `unit_state UNIT` sets us_active (as
# `systemctl is-active` prints it) and us_pid; it asks itself about a unit not asked for. Both are
# "" without systemd as PID 1.
us_units='' us_shown=''
ask_units() {
  us_how=is-active
  if [ "$1" = --pid ]; then
    us_how=show
    shift
  fi
  us_units=" $* " us_shown=''
  [ -d /run/systemd/system ] || return 0
  if [ "$us_how" = show ]; then
    us_shown=$(systemctl show -p ActiveState -p MainPID -- "$@" 2>/dev/null) || true
  else
    us_shown=$(systemctl is-active -- "$@" 2>/dev/null) || true
  fi
}
# shellcheck disable=SC2034 # read by the scripts that include this one
unit_state() {
  us_active='' us_pid='' us_n=0 us_block=1
  [ -d /run/systemd/system ] || return 0
  case $us_units in *" $1 "*) ;; *) ask_units "$1" ;; esac
  set -f
  for us_u in $us_units; do
    us_n=$((us_n + 1))
    [ "$us_u" != "$1" ] || break
  done
  set +f
  # is-active prints a line per unit; show a block per unit with an empty line between them
  # (which `read` keeps), each in the order asked
  while IFS= read -r us_l; do
    case $us_l in
      '') us_block=$((us_block + 1)) ;;
      ActiveState=*) [ "$us_block" != "$us_n" ] || us_active=${us_l#*=} ;;
      MainPID=*) [ "$us_block" != "$us_n" ] || us_pid=${us_l#*=} ;;
      *)
        [ "$us_block" != "$us_n" ] || us_active=$us_l
        us_block=$((us_block + 1))
        ;;
    esac
  done <<EOF
$us_shown
EOF
}
# unit_runs UNIT: succeeds where `systemctl is-active UNIT` would exit 0
unit_runs() {
  unit_state "$1"
  case $us_active in active | reloading | refreshing) return 0 ;; esac
  return 1
}
