# shellcheck shell=sh
# A library for probes: `keepoff_probe` prints whether NetworkManager and systemd-networkd run on
# the host ("yes"/"no" each), so the provider tells only a running manager to leave its devices
# alone and never enables one. Parsed by parseKeepOffProbe (keep-off.ts). Needs probe.sh's `section`.
keepoff_probe() {
  section keepoff-nm
  if command -v nmcli >/dev/null 2>&1 && nmcli -t general status >/dev/null 2>&1; then
    echo yes
  else
    echo no
  fi
  section keepoff-networkd
  if [ -d /run/systemd/system ] && systemctl is-active --quiet systemd-networkd 2>/dev/null; then
    echo yes
  else
    echo no
  fi
}
