#!/bin/sh
# The DnsmasqInstance probe, one round trip: dnsmasq-probe.sh CONF HOSTS PIDFILE LEASES CONFIG-DIR
# RUN-DIR DATA-DIR CONFIG-ROOT UNIT UNIT-FILE INTERFACE. Processes are found by name in /proc and kept only when they share
# this shell's mount namespace: the config path names a file in this namespace, and a container
# (or another lab host) may run a dnsmasq with the same path. A file's section is printed only
# when the file exists.
. ../../host/probe.sh
. ../../persist/unit-state.sh
. ../../persist/persist-probe.sh
. ../../host/same-ns.sh
. ../../host/procs-named.sh
. ../../host/is-link.sh
. ./dnsmasq-interfaces.sh
conf=$1 hosts=$2 pidf=$3 leases=$4 cdir=$5 rdir=$6 ddir=$7 root=$8 unit=$9 ufile=${10} iface=${11}
dump() { if [ -f "$2" ]; then section "$1"; cat -- "$2"; fi; }
section processes
procs_named dnsmasq /proc
for d in $procs; do
  same_ns "$d/ns/mnt" /proc/self/ns/mnt || continue
  { read -r _ _ state ppid _ < "$d/stat"; } 2>/dev/null || continue
  args=$(tr '\000' '\037' < "$d/cmdline" 2>/dev/null) || continue
  echo "${d#/proc/} $ppid $state $args"
done
dump pidfile "$pidf"
dump config "$conf"
dump hosts "$hosts"
dump leases "$leases"
# Modes of the files with user data, printed only when one exists (files of older versions: 644),
# by one stat for all of them.
set --
for f in "$conf" "$hosts" "$leases"; do
  if [ -f "$f" ]; then set -- "$@" "$f"; fi
done
if [ "$#" -gt 0 ]; then
  section modes
  stat -c '%a %n' -- "$@"
fi
section dirs
for x in "$cdir" "$rdir" "$ddir"; do if [ -d "$x" ]; then echo 1; else echo 0; fi; done
section instances
dnsmasq_interfaces "$root"
# one systemctl for the unit's state and its main pid
ask_units --pid "$unit"
persist_probe "$unit" "$ufile"
if [ -d /run/systemd/system ]; then
  section mainpid; unit_state "$unit"; echo "$us_pid"
fi
# The addresses of the interface served, the only ones a plan reads: that link alone, so a look
# costs the same on a host with hundreds of links (every link's: 5.5 ms of host CPU and 170 KB to
# send and parse with 420 links; this one's: 1.4 ms and 0.5 KB). A link that is not there is the
# empty list, printed by the shell. Without sysfs, every link's.
section addresses
if [ ! -d /sys/class/net ]; then
  ip -j addr show
elif is_link "$iface"; then
  ip -j addr show dev "$iface"
else
  echo '[]'
fi
exit 0
