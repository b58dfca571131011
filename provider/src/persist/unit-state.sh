# shellcheck shell=sh
# Probes ask systemd once about every unit they read: a systemctl costs a booted host 5-8 ms of
# CPU (PID 1's share included), and one about two units hardly more. `ask_units UNIT...` asks
# `systemctl is-active`; `ask_units --pid UNIT...` asks `systemctl show` for the state and MainPID
# (more work for PID 1, less than a second systemctl). Then `unit_state UNIT` sets us_active (as
# `systemctl is-active` prints it) and us_pid; it asks itself about a unit not asked for.
# `unit_enabled UNIT` prints what `systemctl is-enabled UNIT` prints. All are "" without systemd
# as PID 1. In a batch of probes, both answer from the ub_* variables of unit-batch.sh for the
# units it asked about.
us_units='' us_shown=''
ask_units() {
  us_how=is-active
  if [ "$1" = --pid ]; then
    us_how=show
    shift
  fi
  # the batch's answer when it asked the same way about all of them
  if [ "$us_how" = show ]; then
    us_units=${ub_pid-} us_shown=${ub_pid_out-}
  else
    us_units=${ub_active-} us_shown=${ub_active_out-}
  fi
  if [ -n "$us_units" ] && units_among "$us_units" "$@"; then return 0; fi
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
# unit_enabled UNIT: the batch's answer is the state column of list-unit-files (unit-batch.sh)
unit_enabled() {
  [ -d /run/systemd/system ] || return 0
  case ${ub_enabled-} in
    *" $1 "*)
      ue_state=''
      while read -r ue_u ue_s _; do
        if [ "$ue_u" = "$1" ]; then ue_state=$ue_s && break; fi
      done <<EOF
${ub_enabled_out-}
EOF
      echo "$ue_state"
      return 0
      ;;
  esac
  systemctl is-enabled -- "$1" 2>/dev/null || true
}
# units_among LIST UNIT...: succeeds when every UNIT is in LIST (" u1 u2 ")
units_among() {
  ua_l=$1
  shift
  for ua_u in "$@"; do
    case $ua_l in *" $ua_u "*) ;; *) return 1 ;; esac
  done
  return 0
}
