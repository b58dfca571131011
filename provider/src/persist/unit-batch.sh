# shellcheck shell=sh
# A library for apply-batch.sh: `units_batch --active UNIT... --pid UNIT... --enabled UNIT...` asks
# systemd about the units of a batch's probes before they run, one systemctl per way of asking
# (three at most for the batch, where each probe would ask twice): `systemctl is-active`,
# `systemctl show` of state and MainPID, and `systemctl list-unit-files`. A probe's ask_units and
# unit_enabled (unit-state.sh) then answer from the ub_* variables for the units asked about here
# and ask themselves about any other. The variables are exported, for a probe that runs as a
# process of its own (a host without remote shells).
#
# list-unit-files' state column is what is-enabled prints (both are systemd's
# unit_file_lookup_state, read from disk at each call), and it leaves out a unit it finds no file
# of, where is-enabled prints nothing on stdout. Its arguments are glob patterns: unit names here
# are the provider's (letters, digits and `-_.:`, checked by apply.ts), so each matches itself.
units_batch() {
  [ -d /run/systemd/system ] || return 0
  ub_a='' ub_p='' ub_e='' ub_k=''
  for ub_w in "$@"; do
    case $ub_w in
      --active | --pid | --enabled) ub_k=$ub_w ;;
      *)
        case $ub_k in
          --active) ub_a="$ub_a $ub_w" ;;
          --pid) ub_p="$ub_p $ub_w" ;;
          --enabled) ub_e="$ub_e $ub_w" ;;
        esac
        ;;
    esac
  done
  set -f
  # shellcheck disable=SC2086 # one word per unit
  if [ -n "$ub_a" ]; then
    ub_active_out=$(systemctl is-active -- $ub_a 2>/dev/null) || true
    ub_active="$ub_a "
  fi
  # shellcheck disable=SC2086
  if [ -n "$ub_p" ]; then
    ub_pid_out=$(systemctl show -p ActiveState -p MainPID -- $ub_p 2>/dev/null) || true
    ub_pid="$ub_p "
  fi
  # shellcheck disable=SC2086
  if [ -n "$ub_e" ]; then
    ub_enabled_out=$(systemctl list-unit-files --no-legend --no-pager -- $ub_e 2>/dev/null) || true
    ub_enabled="$ub_e "
  fi
  set +f
  export ub_active ub_active_out ub_pid ub_pid_out ub_enabled ub_enabled_out
}
