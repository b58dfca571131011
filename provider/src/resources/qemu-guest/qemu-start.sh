#!/bin/sh
# Starts a guest whose accel is "auto": qemu-start.sh MACHINE PIDFILE NOTE N KVM-ARGV... TCG-ARGV...
# (the first N words are QEMU's command line with KVM, the rest the same with TCG). KVM when it
# works: kvm-probe.sh's throw-away guest (this machine type, -cpu host) reaches its boot menu, the
# guest's own KVM start succeeds, and its QEMU is still there 1 s later (a vCPU that aborts on an
# MSR takes it down at once). TCG otherwise. When /dev/kvm exists but KVM was not used, the reason
# goes to NOTE (in the guest's run directory): the observe probe reads it and the provider warns.
. ./kvm-probe.sh
machine=$1 pidfile=$2 note=$3 n=$4
shift 4
case $n in '' | *[!0-9]*) echo "qemu-start.sh: bad word count $n" >&2; exit 2 ;; esac
[ "$n" -lt $# ] || { echo "qemu-start.sh: no TCG command line" >&2; exit 2; }
# The two command lines as references to positional parameters: eval sees "${1}" "${2}"..., never
# the words themselves.
kvm='' tcg='' i=1
while [ "$i" -le "$n" ]; do kvm="$kvm \"\${$i}\""; i=$((i + 1)); done
while [ "$i" -le $# ]; do tcg="$tcg \"\${$i}\""; i=$((i + 1)); done
ours() { [ -n "$pid" ] && tr '\0' '\n' <"/proc/$pid/cmdline" 2>/dev/null | grep -qxF -- "$pidfile"; }
rm -f -- "$note"
why=$(kvm_probe "$machine")
if [ "$why" = usable ]; then
  err=$(mktemp) || exit 1
  if eval "$kvm" >"$err" 2>&1; then
    pid=$(cat -- "$pidfile" 2>/dev/null || true)
    w=0
    while [ "$w" -lt 10 ] && ours; do sleep 0.1; w=$((w + 1)); done
    if [ "$w" -ge 10 ]; then rm -f -- "$err"; echo "started with KVM"; exit 0; fi
    why="QEMU with KVM was gone within 1 s of its start"
  else
    why="QEMU with KVM failed to start: $(grep -v '^qemu-system-x86_64: warning' "$err" | head -n 3 | tr '\n' ' ')"
  fi
  rm -f -- "$err"
else
  why=${why#unusable }
fi
if [ -e /dev/kvm ]; then printf '%s\n' "$why" >"$note"; fi
eval "$tcg" || exit $?
echo "started with TCG: $why"
