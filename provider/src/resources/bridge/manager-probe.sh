# shellcheck shell=sh
# A library for the bridge probe: `manager_probe BRIDGE` prints which network manager owns which
# NIC (NetworkManager's devices, networkd's configured links), the ifupdown flavour and every
# ifupdown file, and what the provider backed up for the bridge. Parsed by parseManagerProbe
# (manager.ts). Needs probe.sh's `section` and unit-state.sh (networkd's state is asked for once
# with the probe's other units).
manager_probe() {
  section nm
  if command -v nmcli >/dev/null 2>&1 && nmcli -t general status >/dev/null 2>&1; then
    nmcli -t -f DEVICE,STATE,CONNECTION device 2>/dev/null || true
  fi
  section networkd
  if unit_runs systemd-networkd.service; then
    networkctl list --no-legend --no-pager 2>/dev/null || true
  fi
  section ifupdown
  if [ -d /usr/share/ifupdown2 ]; then
    echo ifupdown2
  elif [ -x /sbin/ifup ] || [ -x /usr/sbin/ifup ]; then
    if [ -x /etc/network/if-pre-up.d/bridge ] || [ -x /lib/bridge-utils/ifupdown.sh ]; then
      echo ifupdown bridge-utils
    else
      echo ifupdown
    fi
  fi
  for mp_f in /etc/network/interfaces /etc/network/interfaces.d/*; do
    if [ -f "$mp_f" ]; then
      section ifupdown-file "$mp_f"
      cat -- "$mp_f"
    fi
  done
  # printed only when they exist (a bridge that took over a NIC): no process otherwise
  mp_dir=/etc/pulumi-hypervisor/bridge-nic/$1
  section nic-manager
  if [ -f "$mp_dir/manager" ]; then cat -- "$mp_dir/manager" 2>/dev/null || true; fi
  section nic-backup-path
  if [ -f "$mp_dir/path" ]; then cat -- "$mp_dir/path" 2>/dev/null || true; fi
  section nic-backup
  if [ -f "$mp_dir/original" ]; then cat -- "$mp_dir/original" 2>/dev/null || true; fi
  for mp_f in /etc/systemd/network/05-pulumi-hypervisor-"$1".* /etc/systemd/network/05-pulumi-hypervisor-"$1"-*; do
    if [ -f "$mp_f" ]; then
      section networkd-file "$mp_f"
      cat -- "$mp_f"
    fi
  done
}
