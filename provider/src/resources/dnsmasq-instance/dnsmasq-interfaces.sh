# shellcheck shell=sh
# A library for probes: `dnsmasq_interfaces ROOT` prints the `interface=` line of every instance's
# ROOT/NAME/dnsmasq.conf as FILE:LINE, by one grep for all of them (a host with a bridge per guest
# network has many; grep is a process, about 1 ms of CPU each).
dnsmasq_interfaces() {
  di_root=$1
  set --
  for di_f in "$di_root"/*/dnsmasq.conf; do
    if [ -f "$di_f" ]; then set -- "$@" "$di_f"; fi
  done
  if [ "$#" -gt 0 ]; then grep -H "^interface=" -- "$@"; fi
}
