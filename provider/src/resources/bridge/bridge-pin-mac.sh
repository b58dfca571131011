#!/bin/sh
# Sets a bridge's MAC to the one it has now (bridge-pin-mac.sh BRIDGE [FILE]), so the kernel keeps
# it when ports come and go (addr_assign_type becomes NET_ADDR_SET). With FILE (a persisted
# bridge): a MAC recorded there is set instead, so a bridge created at boot gets the MAC it had;
# otherwise the pinned MAC is recorded there.
set -e
if [ -n "${2:-}" ] && [ -s "$2" ]; then
  ip link set dev "$1" address "$(cat "$2")"
  exit 0
fi
# sysfs reads at any offset, so the shell's own read takes it: no process
IFS= read -r mac <"/sys/class/net/$1/address"
ip link set dev "$1" address "$mac"
if [ -n "${2:-}" ]; then
  mkdir -p "$(dirname "$2")"
  printf '%s\n' "$mac" >"$2.pulumi-tmp.$$"
  chmod 644 "$2.pulumi-tmp.$$"
  mv -f "$2.pulumi-tmp.$$" "$2"
fi
