#!/bin/sh
# Sets a bridge's MAC to the one it has now (bridge-pin-mac.sh BRIDGE), so the kernel keeps it
# when ports come and go (addr_assign_type becomes NET_ADDR_SET).
ip link set dev "$1" address "$(cat /sys/class/net/"$1"/address)"
