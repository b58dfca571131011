# shellcheck shell=sh
# A library for probes: `keepoff_probe` prints whether NetworkManager and systemd-networkd run on
# the host ("yes"/"no" each), so the provider tells only a running manager to leave its devices
# alone and never enables one. Parsed by parseKeepOffProbe (keep-off.ts). Needs probe.sh's `section`.
# Needs unit-state.sh too: networkd's state is asked for once with the probe's other units.
keepoff_probe() {
  section keepoff-nm
  if command -v nmcli >/dev/null 2>&1 && nmcli -t general status >/dev/null 2>&1; then
    echo yes
  else
    echo no
  fi
  section keepoff-networkd
  if unit_runs systemd-networkd.service; then echo yes; else echo no; fi
}
