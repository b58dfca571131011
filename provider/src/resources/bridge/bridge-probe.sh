#!/bin/sh
# The Bridge probe, one round trip: links with details and addresses, routes v4/v6,
# /etc/qemu/bridge.conf, the route to the SSH client, the ports the provider recorded for the
# bridge and how its MAC was assigned. $1 = the SSH client's address ("" when unknown), $2 = bridge.
. ../../host/probe.sh
section links; ip -d -j addr show
section routes4; ip -j route show table main
section routes6; ip -6 -j route show table main
section bridge-conf; cat /etc/qemu/bridge.conf 2>/dev/null || true
section ssh-route; if [ -n "$1" ]; then ip -j route get "$1" 2>/dev/null || true; fi
section ports; cat /run/pulumi-hypervisor/bridge/"$2".ports 2>/dev/null || true
section addr-assign-type; cat /sys/class/net/"$2"/addr_assign_type 2>/dev/null || true
. ./manager-probe.sh
manager_probe "$2"
