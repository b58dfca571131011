#!/bin/sh
# The Bridge probe, one round trip: links with details and addresses, routes of the main table,
# /etc/qemu/bridge.conf, the route to the SSH client, the ports the provider recorded for the
# bridge, how its MAC was assigned, the network managers, and the persisted layer (unit, boot
# script, recorded MAC, the file that keeps NetworkManager off the bridge).
# $1 = the SSH client's address ("" when unknown), $2 = bridge, $3 = unit, $4... = persisted files.
. ../../host/probe.sh
. ../../persist/persist-probe.sh
# One `ip` for the links, the routes of both families and the route to the SSH client (each
# process costs the host about 1.4 ms of CPU): a JSON line each, in that order. `table all` is the
# only listing that has both families; the parser keeps the main table's. The route lookup comes
# last: when it fails (no route) the batch stops after the two lines before it, and its message is
# dropped.
section links
q='addr show
route show table all'
case $1 in '' | *[!0-9A-Fa-f:.]*) ;; *) q="$q
route get $1" ;; esac
# a here-document, not a pipe from printf: the shell writes it itself, with no process of its own
ip -d -j -batch - 2>/dev/null <<EOF
$q
EOF
# files are printed only when they exist: cat is then the only process these sections start
section bridge-conf; if [ -f /etc/qemu/bridge.conf ]; then cat /etc/qemu/bridge.conf 2>/dev/null; fi
section ports
if [ -f "/run/pulumi-hypervisor/bridge/$2.ports" ]; then cat "/run/pulumi-hypervisor/bridge/$2.ports" 2>/dev/null; fi
section addr-assign-type
if { IFS= read -r v <"/sys/class/net/$2/addr_assign_type"; } 2>/dev/null; then echo "$v"; fi
. ./manager-probe.sh
manager_probe "$2"
. ../../persist/keepoff-probe.sh
keepoff_probe
shift 2
persist_probe "$@"
