#!/bin/sh
# Prints what the bench's job leaves on a host, for comparing tools (run inside the host's
# namespaces by the bench, not over SSH): links and addresses as JSON, the nft ruleset without
# counters, ip_forward, and every dnsmasq of this network namespace with its config file.
set -eu
echo "## links"
ip -j -d addr show
echo
echo "## nft"
nft -s list ruleset
echo "## ip_forward"
sysctl -n net.ipv4.ip_forward
echo "## dnsmasq"
own=$(readlink /proc/self/ns/net)
for p in $(pgrep -x dnsmasq || true); do
  [ "$(readlink "/proc/$p/ns/net" 2>/dev/null)" = "$own" ] || continue
  args=$(tr '\000' ' ' < "/proc/$p/cmdline")
  echo "process: $args"
  for a in $args; do
    case "$a" in --conf-file=*) echo "config ${a#--conf-file=}:"; cat -- "${a#--conf-file=}" ;; esac
  done
done
