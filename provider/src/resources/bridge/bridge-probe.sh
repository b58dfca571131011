#!/bin/sh
# The Bridge probe, one round trip: links with details and addresses, routes of the main table,
# /etc/qemu/bridge.conf, the route to the SSH client, the ports the provider recorded for the
# bridge, how its MAC was assigned, the network managers, and the persisted layer (unit, boot
# script, recorded MAC, the file that keeps NetworkManager off the bridge).
# $1 = the SSH client's address ("" when unknown), $2 = bridge, $3 = the ports asked for
# (space-separated), $4 = unit, $5... = persisted files.
. ../../host/probe.sh
. ../../persist/unit-state.sh
. ../../persist/persist-probe.sh
. ../../host/is-link.sh
# One `ip` (docs/bridge.md, Observation) lists, a JSON line each: the links a plan reads (the
# bridge's ports, the bridge, each port asked for that is not one of them), the routes via them
# (ip then omits `dev`), and last the route to the SSH client (whose failing lookup ends the batch).
# Only links that exist are asked for: ip -batch stops at a failing line. After an apply's ip lines
# (ab_ip_run) the bridge exists; a port they attach is listed twice. The section's argument: the
# number of link listings, `via` and the devices whose routes follow. Without sysfs, every link and
# route (argument `1`).
q='' n=0 via=''
add() { q="${q:+$q
}$1"; }
if [ -d /sys/class/net ]; then
  if is_link "$2" || [ -n "${ab_ip_lines+x}" ]; then
    add "addr show master $2"
    add "addr show dev $2"
    n=2 via=$2
  fi
  set -f
  for p in $3; do
    case " $via " in *" $p "*) continue ;; esac
    is_link "$p" || continue
    via="${via:+$via }$p"
    # a port of the bridge is in the master listing already
    if [ ! -e "/sys/class/net/$2/brif/$p" ]; then
      add "addr show dev $p"
      n=$((n + 1))
    fi
  done
  for p in $via; do add "route show table all dev $p"; done
  set +f
  section links "$n via${via:+ $via}"
else
  add 'addr show'
  add 'route show table all'
  section links 1
fi
# The route to the SSH client says which link carries the session: a plan reads it of the bridge
# and of its ports alone, so a look that finds neither (a create's first) asks for no route and
# starts no ip.
if [ -n "$q" ] || [ -n "${ab_ip_lines+x}" ]; then
  case $1 in '' | *[!0-9A-Fa-f:.]*) ;; *) add "route get $1" ;; esac
fi
# a here-document: the shell writes it, no process; nothing to ask (a look after a delete), no ip
if [ -n "${ab_ip_lines+x}" ]; then ab_ip_run "$q" quiet; elif [ -n "$q" ]; then
  ip -d -j -batch - 2>/dev/null <<EOF
$q
EOF
fi
# files are printed only when they exist: cat is then the only process these sections start
section bridge-conf; if [ -f /etc/qemu/bridge.conf ]; then cat /etc/qemu/bridge.conf 2>/dev/null; fi
section ports
if [ -f "/run/pulumi-hypervisor/bridge/$2.ports" ]; then cat "/run/pulumi-hypervisor/bridge/$2.ports" 2>/dev/null; fi
section addr-assign-type
if { IFS= read -r v <"/sys/class/net/$2/addr_assign_type"; } 2>/dev/null; then echo "$v"; fi
. ./manager-probe.sh
# one systemctl for networkd (the managers' sections read it twice) and the bridge's unit
ask_units systemd-networkd.service "$4"
manager_probe "$2"
. ../../persist/keepoff-probe.sh
keepoff_probe
shift 3
persist_probe "$@"
