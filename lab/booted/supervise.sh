#!/usr/bin/env bash
# Keeps one booted lab host running: starts systemd-nspawn, gives the machine's end of its veth an
# address each time nspawn creates it, and starts nspawn again when the container rebooted (nspawn
# exits 133 then, which systemd-nspawn@.service handles with RestartForceExitStatus=133).
# Usage: supervise.sh STATE_DIR OUTSIDE_IF OUTSIDE_CIDR -- systemd-nspawn ARGS...
set -u
state_dir=$1 outside_if=$2 outside_cidr=$3
shift 3
[ "$1" = "--" ] && shift

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
  # nspawn creates the veth before the container's init runs; give it ~10 s.
  for _ in $(seq 1 200); do
    if ip link show dev "$outside_if" >/dev/null 2>&1; then
      ip addr replace "$outside_cidr" dev "$outside_if" && ip link set dev "$outside_if" up
      break
    fi
    sleep 0.05
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
