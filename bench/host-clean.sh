#!/bin/sh
# Removes everything any tool of the bench may have left on a host (run inside the host's
# namespaces by the bench): the bench's links, NAT tables, dnsmasq processes and files.
set -u
own=$(readlink /proc/self/ns/net)
for p in $(pgrep -x dnsmasq || true); do
  [ "$(readlink "/proc/$p/ns/net" 2>/dev/null)" = "$own" ] && kill -s KILL "$p" 2>/dev/null
done
for l in $(ip -o link show | sed -n 's/^[0-9]*: \(b\(br\|tap\)[0-9]*\)[:@].*/\1/p'); do
  ip link del dev "$l" 2>/dev/null
done
nft list tables 2>/dev/null | while read -r _ fam t; do
  case "$t" in pulumi*|bench*) nft delete table "$fam" "$t" ;; esac
done
sysctl -qw net.ipv4.ip_forward=0
rm -rf /etc/pulumi-hypervisor /run/pulumi-hypervisor /var/lib/pulumi-hypervisor /root/.ansible
exit 0
