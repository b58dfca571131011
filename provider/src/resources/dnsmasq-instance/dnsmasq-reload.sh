#!/bin/sh
# Installs the hosts file from stdin and makes dnsmasq re-read it: dnsmasq-reload.sh PID CONF
# HOSTS. The file is renamed into place only when $pid is still our dnsmasq, and the SIGHUP
# follows at once, so the file on disk is the one the process has loaded.
set -e
pid=$1 conf=$2 hosts=$3
. ./dnsmasq-lib.sh
ours || { echo "process $pid is not dnsmasq running $conf (has it exited?)" >&2; exit 1; }
th="$hosts.pulumi-tmp.$$"
# an rm only when it is left (a failure before the mv)
trap '[ ! -e "$th" ] || rm -f -- "$th"' EXIT
if ! out=$( (umask 077; cat > "$th") 2>&1); then
  echo "writing the dnsmasq hosts file failed: $out" >&2
  exit 1
fi
private "$th"
mv -f -- "$th" "$hosts"
kill -s HUP "$pid"
exit 0
