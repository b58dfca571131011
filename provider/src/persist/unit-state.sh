# shellcheck shell=sh
# Probes ask systemd once about every unit they read (a systemctl costs a booted host about 5 ms
# of CPU, PID 1's share included, and one about two units the same): `ask_units UNIT...`, then
# `unit_state UNIT` sets us_active (as `systemctl is-active` prints it) and us_pid (MainPID); it
# asks itself about a unit not asked for. Both are "" without systemd as PID 1.
us_units='' us_shown=''
ask_units() {
  us_units=" $* " us_shown=''
  [ ! -d /run/systemd/system ] || us_shown=$(systemctl show -p ActiveState -p MainPID -- "$@" 2>/dev/null) || true
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
  # a block per unit in the order asked, an empty line between them (which `read` keeps)
  while IFS= read -r us_l; do
    case $us_l in
      '') us_block=$((us_block + 1)) ;;
      ActiveState=*) [ "$us_block" != "$us_n" ] || us_active=${us_l#*=} ;;
      MainPID=*) [ "$us_block" != "$us_n" ] || us_pid=${us_l#*=} ;;
    esac
  done <<EOF
$us_shown
EOF
}
