# shellcheck shell=sh
# A library for probes: `probe_ip QUERY` runs `ip -d -j -batch -` with the lines of QUERY (none:
# no ip) and returns its exit code. A probe given to an apply's batch as `probe-ip`
# (apply-batch.sh) runs there with the apply's last `ip` lines waiting for it: its ip runs them
# first, then QUERY, one process for both, so the query sees what they did. Such a probe calls
# probe_ip exactly once, whatever its QUERY, and names in QUERY the links those lines make (it
# chose its lines before they ran).
probe_ip() {
  if [ -n "${ab_ip_lines+x}" ]; then
    ab_ip_run "$1"
    return
  fi
  [ -z "$1" ] || ip -d -j -batch - <<EOF
$1
EOF
}
