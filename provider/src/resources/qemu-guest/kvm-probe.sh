# shellcheck shell=sh
# A library: `kvm_probe MACHINE` prints `usable`, or `unusable <why>`. Opening /dev/kvm is not
# enough: with broken nested virtualization QEMU starts and the vCPU makes no progress, and on other
# hosts `-cpu host` aborts on an MSR the nested hypervisor refuses. So a real KVM guest with the
# guest's own machine type and `-cpu host` (SeaBIOS, no disks) must print its boot message on the
# debug console within 3 s (KVM_PROBE_TENTHS in observe.ts); under TCG this takes about 0.2 s.
kvm_probe() {
  if [ ! -e /dev/kvm ]; then echo "unusable /dev/kvm does not exist"; return; fi
  if [ ! -r /dev/kvm ] || [ ! -w /dev/kvm ]; then echo "unusable /dev/kvm is not readable and writable"; return; fi
  kd=$(mktemp -d) || { echo "unusable mktemp failed"; return; }
  if qemu-system-x86_64 -accel kvm -machine "$1" -cpu host -m 16 -display none -nodefaults -no-user-config \
      -debugcon "file:$kd/log" -global isa-debugcon.iobase=0x402 -daemonize -pidfile "$kd/pid" >"$kd/err" 2>&1; then
    n=0
    while [ $n -lt 30 ] && ! grep -q -e 'No bootable device' -e 'Booting from' "$kd/log" 2>/dev/null; do
      sleep 0.1; n=$((n + 1))
    done
    kp=$(cat "$kd/pid" 2>/dev/null)
    [ -n "$kp" ] && kill -KILL "$kp" 2>/dev/null
    if [ $n -lt 30 ]; then echo usable
    else echo "unusable a KVM guest made no progress in 3 s (nested virtualization not working?)"; fi
  else
    echo "unusable $(grep -v '^qemu-system-x86_64: warning' "$kd/err" | head -n 3 | tr '\n' ' ')"
  fi
  rm -rf "$kd"
}
