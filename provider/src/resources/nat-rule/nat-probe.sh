#!/bin/sh
# The NatRule probe, one round trip: nat-probe.sh TABLE SYSCTL-OWNER UNIT FILE... Which tools exist, the
# provider's nft table (only that table: `list tables` first, so an absent table is not confused
# with a failing nft), iptables-save (every table the host has, without loading modules), and the
# ip_forward claim, the ports sshd listens on, and the rule's persisted layer (its unit and boot script). A listing that
# fails prints `pulumi-hypervisor-failed: <what it said>`.
. ../../host/probe.sh
. ../../sysctl-probe.sh
. ../../persist/unit-state.sh
. ../../persist/persist-probe.sh
. ./sshd-ports.sh
t=$1 owner=$2
shift 2
failed=pulumi-hypervisor-failed:
have() { command -v "$1" >/dev/null 2>&1; }
nl='
'
section tools
if have nft; then echo "nft yes"; else echo "nft no"; fi
if have iptables-save && have iptables-restore; then echo "iptables yes"; else echo "iptables no"; fi
section nft
if have nft; then
  if tables=$(nft list tables ip 2>&1); then
    # the table's own line among them, matched by the shell (a grep is a process, about 1 ms of CPU)
    case "$nl$tables$nl" in
      *"${nl}table ip $t$nl"*) listed=1 ;;
      *) listed=0 ;;
    esac
    if [ "$listed" = 1 ]; then
      if out=$(nft -j list table ip "$t" 2>&1); then printf '%s\n' "$out"; else printf '%s %s\n' "$failed" "$out"; fi
    fi
  else printf '%s %s\n' "$failed" "$tables"; fi
fi
section iptables
if have iptables-save; then
  if out=$(iptables-save 2>&1); then printf '%s\n' "$out"; else printf '%s %s\n' "$failed" "$out"; fi
fi
section sysctl
probe_sysctl "$owner" net/ipv4/ip_forward
section sshd-ports
# The TCP ports sshd listens on, one per line (sshd-ports.sh: found from sshd's own open files, not
# from every process's).
if have ss; then sshd_ports /proc; fi
persist_probe "$@"
