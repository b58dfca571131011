#!/bin/sh
# The NatRule probe, one round trip: nat-probe.sh TABLE SYSCTL-OWNER EXPECT UNIT FILE... Which tools
# exist, the provider's nft table (only that table), iptables-save (every table the host has,
# without loading modules), and the ip_forward claim, the ports sshd listens on, and the rule's
# persisted layer (its unit and boot script). A listing that fails prints
# `pulumi-hypervisor-failed: <what it said>`. An absent table is never confused with a failing
# nft: `list tables` says whether it is there. EXPECT (present or absent: where the table is
# likely, a rule that exists or a create's first look) orders the two listings, so the likely case
# costs one nft (a process, about 5-10 ms of a host's CPU): present lists the table first and
# lists the tables only when that fails; absent lists the tables first and the table only when it
# is among them.
. ../../host/probe.sh
. ../../sysctl-probe.sh
. ../../persist/unit-state.sh
. ../../persist/persist-probe.sh
. ./sshd-ports.sh
t=$1 owner=$2 expect=$3
shift 3
failed=pulumi-hypervisor-failed:
have() { command -v "$1" >/dev/null 2>&1; }
nl='
'
section tools
if have nft; then echo "nft yes"; else echo "nft no"; fi
if have iptables-save && have iptables-restore; then echo "iptables yes"; else echo "iptables no"; fi
# the table's JSON; nothing when it is not there
nft_table() {
  if [ "$expect" = present ] && out=$(nft -j list table ip "$t" 2>&1); then
    printf '%s\n' "$out"
    return
  fi
  if ! tables=$(nft list tables ip 2>&1); then
    printf '%s %s\n' "$failed" "$tables"
    return
  fi
  # the table's own line among them, matched by the shell (a grep is a process, about 1 ms of CPU)
  case "$nl$tables$nl" in
    *"${nl}table ip $t$nl"*) ;;
    *) return ;;
  esac
  if out=$(nft -j list table ip "$t" 2>&1); then printf '%s\n' "$out"; else printf '%s %s\n' "$failed" "$out"; fi
}
section nft
if have nft; then nft_table; fi
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
