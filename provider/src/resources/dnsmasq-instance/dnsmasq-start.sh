#!/bin/sh
# Checks and installs config and hosts file and starts dnsmasq, stopping $7 first when set:
# dnsmasq-start.sh CONF HOSTS CONFIG-DIR RUN-DIR DATA-DIR PIDFILE PID N. stdin is the config (N
# bytes, read with dd bs=1 so nothing past it is consumed) followed by the hosts file. Both are
# checked (dnsmasq --test) before anything changes, and replace the files only once the old
# process has exited: the files on disk always describe the running process. Under systemd two
# more: MODE `install` (the unit starts dnsmasq, not this script) and UNIT, stopped first when it
# supervises $pid (a TERM of its own would read as a clean exit, not a restart).
set -e
conf=$1 hosts=$2 cdir=$3 rdir=$4 ddir=$5 pidf=$6 pid=$7 n=$8 mode=${9:-start} unit=${10:-}
. ./dnsmasq-lib.sh
umask 022
mkdir -p -- "$cdir" "$rdir" "$ddir"
# dnsmasq reads the hosts file (at start and on SIGHUP) after dropping root: the path must be
# traversable by its unprivileged user. Only search (x) permission is added to the parents.
chmod go+x /etc/pulumi-hypervisor /etc/pulumi-hypervisor/dnsmasq "$cdir"
tc="$conf.pulumi-tmp.$$" th="$hosts.pulumi-tmp.$$"
trap 'rm -f -- "$tc" "$th"' EXIT
dd bs=1 count="$n" of="$tc" 2>/dev/null
cat > "$th"
if ! out=$(dnsmasq --test --conf-file="$tc" 2>&1); then echo "dnsmasq --test rejected the config: $out" >&2; exit 1; fi
if [ -n "$unit" ]; then systemctl stop -- "$unit"; fi
if [ -n "$pid" ]; then stop; fi
mv -f -- "$th" "$hosts"
mv -f -- "$tc" "$conf"
rm -f -- "$pidf"
if [ "$mode" = start ]; then dnsmasq --conf-file="$conf"; fi
