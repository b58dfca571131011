# shellcheck shell=sh
# A library. `tap_holders NAME` prints `holder PID COMMAND` for each process of this network namespace
# holding the tap open: the tun driver prints `iff:\t<name>` in an attached fd's fdinfo, and grep
# reads every fdinfo on the host (5 ms idle, 190 ms with 20,000 open files). fdinfo does not name
# the device's namespace: a same-named tap in a container is another device. Needs same_ns.
tap_holders() {
  _th_found=$(grep -lxF -e "iff:	$1" /proc/[0-9]*/fdinfo/* 2>/dev/null)
  for _th_f in $_th_found; do
    _th_pid=${_th_f#/proc/}
    _th_pid=${_th_pid%%/*}
    same_ns "/proc/$_th_pid/ns/net" "/proc/$$/ns/net" || continue
    echo "holder $_th_pid $(tr '\000\n\t' '   ' <"/proc/$_th_pid/cmdline" 2>/dev/null | cut -c1-300)"
  done
}

# `tap_unattached NAME` succeeds for a single-queue tap that is up with its carrier off, which the
# kernel sets when the last holder lets go. A carrier forced off (ip link set carrier off,
# TUNSETCARRIER) passes too, but the kernel refuses `ip tuntap del` on a held single-queue tap
# (EBUSY). A multi-queue tap, a tap that is down or unreadable files fail: the caller scans.
tap_unattached() {
  { IFS= read -r _tu_flags <"/sys/class/net/$1/tun_flags"; } 2>/dev/null || return 1
  case $_tu_flags in 0x[0-9a-fA-F]*) ;; *) return 1 ;; esac
  # IFF_MULTI_QUEUE
  [ $((_tu_flags & 0x100)) -eq 0 ] || return 1
  { IFS= read -r _tu_carrier <"/sys/class/net/$1/carrier"; } 2>/dev/null || return 1
  [ "$_tu_carrier" = 0 ]
}
