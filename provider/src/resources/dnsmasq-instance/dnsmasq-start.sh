#!/bin/sh
# Checks and installs config and hosts file and starts dnsmasq, stopping $8 first when set:
# dnsmasq-start.sh CONF HOSTS CONFIG-DIR RUN-DIR DATA-DIR PIDFILE LEASES PID N. stdin is the config
# (N bytes, read with dd bs=1 so nothing past it is consumed) followed by the hosts file. Both are
# checked (dnsmasq --test) before anything changes, and replace the files only once the old
# process has exited: the files on disk always describe the running process. Under systemd two
# more: MODE `install` (the unit starts dnsmasq, not this script) and UNIT, stopped first when it
# supervises $pid (a TERM of its own would read as a clean exit, not a restart). Config, hosts and
# lease file are 0640 root:dnsmasq's group (dnsmasq-lib.sh).
set -e
conf=$1 hosts=$2 cdir=$3 rdir=$4 ddir=$5 pidf=$6 leases=$7 pid=$8 n=$9 mode=${10:-start}
unit=${11:-}
. ./dnsmasq-lib.sh
umask 022
mkdir -p -- "$cdir" "$rdir" "$ddir"
# dnsmasq reads the hosts file (at start and on SIGHUP) after dropping root: the path must be
# traversable by its unprivileged user. Only search (x) permission is added to the parents.
chmod go+x /etc/pulumi-hypervisor /etc/pulumi-hypervisor/dnsmasq "$cdir"
tc="$conf.pulumi-tmp.$$" th="$hosts.pulumi-tmp.$$"
# an rm only when one is left (a failure before the mv's): a process each costs the host CPU
trap '[ ! -e "$tc" ] && [ ! -e "$th" ] || rm -f -- "$tc" "$th"' EXIT
# A write error (a full disk) is reported with its cause; dd's record counts are not.
if ! out=$( (umask 077; dd bs=1 count="$n" of="$tc") 2>&1); then
  echo "writing the dnsmasq config failed: $(printf '%s\n' "$out" | sed -n '/^dd:/p')" >&2
  exit 1
fi
if ! out=$( (umask 077; cat > "$th") 2>&1); then
  echo "writing the dnsmasq hosts file failed: $out" >&2
  exit 1
fi
# dnsmasq opens the lease file as root before dropping it and writes it in place, creating it 0644
# (it sets umask 022 itself) unless it exists: it is made here, and an older one made private,
# with the new files (one chgrp and one chmod for all three).
if [ ! -e "$leases" ]; then (umask 077; : > "$leases"); fi
private "$tc" "$th" "$leases"
if ! out=$(dnsmasq --test --conf-file="$tc" 2>&1); then echo "dnsmasq --test rejected the config: $out" >&2; exit 1; fi
if [ -n "$unit" ]; then systemctl stop -- "$unit"; fi
if [ -n "$pid" ]; then stop; fi
mv -f -- "$th" "$hosts"
mv -f -- "$tc" "$conf"
if [ -e "$pidf" ] || [ -L "$pidf" ]; then rm -f -- "$pidf"; fi
if [ "$mode" = start ]; then dnsmasq --conf-file="$conf"; fi
exit 0
