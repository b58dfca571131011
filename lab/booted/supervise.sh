#!/usr/bin/env bash
# Keeps one booted lab host running: starts systemd-nspawn, gives the machine's end of each of its
# veths an address each time nspawn creates them, and starts nspawn again when the container
# rebooted (nspawn exits 133 then, which systemd-nspawn@.service handles with
# RestartForceExitStatus=133).
# Usage: supervise.sh STATE_DIR OUTSIDE_IF OUTSIDE_CIDR [OUTSIDE_IF OUTSIDE_CIDR]... -- systemd-nspawn ARGS...
set -u
state_dir=$1
shift
links=()
while [ "$#" -ge 2 ] && [ "$1" != "--" ]; do
  links+=("$1" "$2")
  shift 2
done
[ "${1-}" = "--" ] && shift

child=
stopping=false
# SIGTERM here is a shutdown request: pass it to nspawn, which powers the container off cleanly.
on_term() {
  stopping=true
  if [ -n "$child" ]; then kill -TERM "$child" 2>/dev/null; fi
}
trap on_term TERM INT

while :; do
  "$@" &
  child=$!
  echo "$child" >"$state_dir/nspawn.pid"
  echo "$(date +%s.%N) start $child" >>"$state_dir/boots.log"
  # nspawn creates the veths before the container's init runs; give them ~10 s.
  for ((i = 0; i < ${#links[@]}; i += 2)); do
    outside_if=${links[i]} outside_cidr=${links[i + 1]}
    for _ in $(seq 1 200); do
      if ip link show dev "$outside_if" >/dev/null 2>&1; then
        ip addr replace "$outside_cidr" dev "$outside_if" && ip link set dev "$outside_if" up
        break
      fi
      sleep 0.05
    done
  done
  # wait returns early when a trapped signal arrives: wait until nspawn itself is gone.
  rc=0
  while :; do
    wait "$child"
    rc=$?
    kill -0 "$child" 2>/dev/null || break
  done
  echo "$(date +%s.%N) exit $rc" >>"$state_dir/boots.log"
  if [ "$stopping" = true ] || [ "$rc" -ne 133 ]; then
    rm -f "$state_dir/nspawn.pid"
    exit "$rc"
  fi
done
