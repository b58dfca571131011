#!/bin/sh
# Refuses to start a guest whose taps are missing: qemu-check-taps.sh GUEST TAP... QEMU would
# otherwise create a fresh tap of that name, on no bridge, and the guest would boot unreachable.
# IFF_TAP (0x0002) in tun_flags tells a tap from a tun device.
guest=$1
shift
for t in "$@"; do
  if [ ! -e "/sys/class/net/$t" ]; then
    echo "guest $guest: tap $t does not exist; not starting the guest on a fresh unbridged tap (is the unit of its TapDevice, pulumi-hypervisor-tap-$t.service, enabled?)" >&2
    exit 1
  fi
  flags=$(cat "/sys/class/net/$t/tun_flags" 2>/dev/null || echo 0)
  if [ $((flags & 2)) -eq 0 ]; then
    echo "guest $guest: $t is not a tap device" >&2
    exit 1
  fi
done
