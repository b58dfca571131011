# shellcheck shell=sh
# A library for probes: `probe_sysctl OWNER KEY...` prints `<key> <value> <claimed:0|1>` for each
# key (a path below /proc/sys; the value is - when the key does not exist).
probe_sysctl() {
  _owner=$1
  shift
  for _k in "$@"; do
    _v=$(cat "/proc/sys/$_k" 2>/dev/null || echo -)
    if [ -e "/run/pulumi-hypervisor/sysctl/$_k/$_owner" ]; then _c=1; else _c=0; fi
    echo "$_k $_v $_c"
  done
}
