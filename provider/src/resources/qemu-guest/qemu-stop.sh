#!/bin/sh
# Shuts a guest down: qemu-stop.sh PIDFILE SOCKET TIMEOUT-SECONDS. Graceful first (ACPI power
# button, then QMP quit), forceful after (SIGTERM, SIGKILL); succeeds when the process is already
# gone.
pidfile=$1 sock=$2 timeout=$3
. ./qmp.sh
ours() { [ -n "$pid" ] && tr '\0' '\n' <"/proc/$pid/cmdline" 2>/dev/null | grep -qxF -- "$pidfile"; }
gone_within() { n=0; while ours; do [ "$n" -ge "$1" ] && return 1; sleep 0.1; n=$((n + 1)); done; return 0; }
pid=$(cat -- "$pidfile" 2>/dev/null || true)
case $pid in ''|*[!0-9]*) pid= ;; esac
if ours; then
  if [ "$timeout" -gt 0 ] && qmp "$sock" '{"execute":"system_powerdown"}' >/dev/null && gone_within $((timeout * 10)); then
    echo "powered off by the guest"
  elif qmp "$sock" '{"execute":"quit"}' >/dev/null && gone_within 50; then
    echo "quit after ${timeout}s"
  else
    kill -TERM "$pid" 2>/dev/null; gone_within 50 || kill -KILL "$pid" 2>/dev/null
    gone_within 50 || { echo "qemu (pid $pid) is still running after SIGKILL" >&2; exit 1; }
    echo "killed"
  fi
fi
rm -f -- "$pidfile" "$sock"
