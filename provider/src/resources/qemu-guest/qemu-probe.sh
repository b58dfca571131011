#!/bin/sh
# The QemuGuest probe, one round trip. Positional parameters: name pidfile socket configfile
# rundir configdir seriallog runas kvm-probe-machine (empty: no probe) bridge-conf(0/1), then counted lists: disks,
# links, files; then the unit and its files (persist-probe.sh).
. ../../host/probe.sh
. ../../persist/unit-state.sh
. ../../persist/persist-probe.sh
. ../../host/same-ns.sh
. ../../host/bridge-link.sh
. ./qmp.sh
. ./kvm-probe.sh
. ../dnsmasq-instance/dnsmasq-interfaces.sh
# shellcheck disable=SC2034 # name is not used, but keeps the parameters readable
name=$1 pidfile=$2 sock=$3 config=$4 rundir=$5 configdir=$6 log=$7 runas=$8 probe=$9
shift 9
bconf=$1; shift
hex() { od -An -v -tx1 "$1" 2>/dev/null | tr -d ' \n'; }
section uid; id -u
section programs
for p in qemu-system-x86_64 qemu-img socat; do command -v "$p" >/dev/null 2>&1 && echo "$p"; done
section present
[ -d "$rundir" ] && echo runDir
[ -d "$configdir" ] && echo configDir
[ -e "$log" ] && echo serialLog
pid=$(cat -- "$pidfile" 2>/dev/null || true)
case $pid in ''|*[!0-9]*) pid= ;; esac
# The pid is ours only when that process was started with our pid file (pids get reused).
if [ -n "$pid" ] && tr '\0' '\n' <"/proc/$pid/cmdline" 2>/dev/null | grep -qxF -- "$pidfile"; then
  section process "$pid"; hex "/proc/$pid/cmdline"
  section qmp
  # A monitor that does not answer within 5 s reads as an unresponsive QEMU (no answers).
  QMP_SECONDS=5 qmp "$sock" '{"execute":"query-status"}' '{"execute":"query-name"}' '{"execute":"query-kvm"}' 2>/dev/null
  # Why a guest with accel "auto" runs on TCG although the host has /dev/kvm (qemu-start.sh).
  if [ -f "$rundir/accel-fallback" ]; then section accel-fallback; cat -- "$rundir/accel-fallback"; fi
else
  pid=
fi
if [ -f "$config" ]; then section config; cat -- "$config"; fi
root=$(dirname -- "$configdir")
for f in "$root"/*/guest.json; do
  # shellcheck disable=SC2015 # continue unless it is a file and not this guest's own config
  [ -f "$f" ] && [ "$f" != "$config" ] || continue
  section other-config "$(basename -- "$(dirname -- "$f")")"; cat -- "$f"
done
# Other QEMU processes in this network namespace (comm is read with a builtin: no fork per pid).
for d in /proc/[0-9]*; do
  [ "$d" = "/proc/$pid" ] && continue
  read -r c 2>/dev/null <"$d/comm" || continue
  case $c in qemu-system-*|qemu-kvm|kvm) ;; *) continue ;; esac
  same_ns "$d/ns/net" /proc/self/ns/net || continue
  section other-process "${d#/proc/}"; hex "$d/cmdline"
done
# Disks, as PATH MARKER pairs: what the path is (a symlink is not followed), its size, whether the
# provider created it (its marker names this device, inode and birth time), and for a regular file qemu-img's
# reading (-U: a running guest's image is locked). qemu-img never opens anything else: a FIFO would
# block it, and a device or directory is not an image file the provider manages.
n=$1; shift; i=0
while [ "$i" -lt "$n" ]; do
  p=$1 m=$2; shift 2; i=$((i + 1))
  # A block device (an LVM volume or zvol, usually a symlink such as /dev/vg/lv) is a raw disk
  # as it is: its size from blockdev, never qemu-img, never grown or deleted.
  if [ -b "$p" ]; then k=block-device; elif [ -L "$p" ]; then k=symlink; elif [ -f "$p" ]; then k="file"
  elif [ -d "$p" ]; then k=directory; elif [ -p "$p" ]; then k=fifo; elif [ -S "$p" ]; then k=socket
  elif [ -c "$p" ]; then k=char-device; elif [ -e "$p" ]; then k=other; else continue; fi
  made=foreign
  if [ "$k" = file ] && [ -f "$m" ] && [ "$(stat -c '%d %i %W' -- "$p")" = "$(head -n 1 -- "$m")" ]; then made=created; fi
  if [ "$k" = block-device ]; then bytes=$(blockdev --getsize64 "$p" 2>/dev/null || echo 0)
  else bytes=$(stat -c %s -- "$p"); fi
  section disk-file "$p"; echo "$k $bytes $made"
  if [ "$k" = symlink ]; then readlink -- "$p"; fi
  if [ "$k" = file ]; then
    section disk "$p"
    # A deadline: an image on a hung network filesystem would hold the whole probe.
    if out=$(timeout 30 qemu-img info -U --output=json -- "$p" 2>&1); then printf '%s\n' "$out"
    elif [ $? = 124 ]; then printf 'error no answer within 30 s\n'
    else printf 'error %s\n' "$out"; fi
  fi
done
# each link as `ip -j -d link show` prints it; a plain bridge from sysfs, with no ip (bridge-link.sh)
n=$1; shift; i=0
while [ "$i" -lt "$n" ]; do
  section link "$1"
  if bridge_link "$1"; then
    printf '%s\n' "$bridge_link_json"
  else
    ip -j -d link show dev "$1" 2>/dev/null
  fi
  shift; i=$((i + 1))
done
n=$1; shift; i=0
while [ "$i" -lt "$n" ]; do
  [ -r "$1" ] || { section missing-file "$1"; }
  shift; i=$((i + 1))
done
# qemu-bridge-helper reads bridge.conf and the files it includes (errors in includes ignored).
conf() {
  [ "$2" -gt 8 ] && return
  [ -r "$1" ] || return
  section bridge-conf "$1"; cat -- "$1"
  # shellcheck disable=SC2013 # one include path per word: bridge.conf paths have no spaces
  for inc in $(sed -n 's/^[[:space:]]*include[[:space:]][[:space:]]*//p' "$1"); do conf "$inc" $(($2 + 1)); done
}
if [ "$bconf" = 1 ]; then
  conf /etc/qemu/bridge.conf 0
  for h in /usr/lib/qemu/qemu-bridge-helper /usr/libexec/qemu-bridge-helper /usr/local/libexec/qemu-bridge-helper; do
    if [ -x "$h" ]; then section bridge-helper; stat -c '%u %a %n' -- "$h"; break; fi
  done
fi
if [ -n "$runas" ]; then section runas; id -u -- "$runas" 2>/dev/null || echo missing; fi
if [ -n "$probe" ] && [ -z "$pid" ]; then section kvm; kvm_probe "$probe"; fi
# one systemctl for the unit's state and its main pid
ask_units --pid "$1"
persist_probe "$@"
if [ -d /run/systemd/system ]; then
  section mainpid; unit_state "$1"; echo "$us_pid"
fi
# The provider's dnsmasq instances and their interfaces: a guest's unit is ordered after them.
section dnsmasq
dnsmasq_interfaces /etc/pulumi-hypervisor/dnsmasq
exit 0
