#!/bin/sh
# Shuts a guest down: qemu-stop.sh PIDFILE SOCKET GRACE-SECONDS. Graceful first (ACPI power button,
# then QMP quit), forceful after (SIGTERM, SIGKILL); succeeds when the process is already gone.
# Every stage has a deadline: each QMP exchange QMP_SECONDS (10), the guest's power-off the grace,
# quit, SIGTERM and SIGKILL 5 s each; a monitor that does not answer (QEMU frozen, or another client
# holds it) skips the grace and quit. At most grace + 35 s in all. Prints which stage stopped it.
pidfile=$1 sock=$2 timeout=$3
. ./qmp.sh
ours() { [ -n "$pid" ] && tr '\0' '\n' <"/proc/$pid/cmdline" 2>/dev/null | grep -qxF -- "$pidfile"; }
gone_within() { n=0; while ours; do [ "$n" -ge "$1" ] && return 1; sleep 0.1; n=$((n + 1)); done; return 0; }
pid=$(cat -- "$pidfile" 2>/dev/null || true)
case $pid in ''|*[!0-9]*) pid= ;; esac
start=$(date +%s)
took() { echo "guest stopped: $1 ($(($(date +%s) - start)) s)"; }
if ours; then
  monitor=1
  if [ "$timeout" -gt 0 ]; then
    if qmp "$sock" '{"execute":"system_powerdown"}' >/dev/null; then
      gone_within $((timeout * 10)) && { took "powered off by the guest"; monitor=; pid=; }
    else
      monitor=0
    fi
  fi
  if [ -n "$pid" ] && [ "$monitor" = 1 ]; then
    qmp "$sock" '{"execute":"quit"}' >/dev/null && gone_within 50 && { took "QMP quit after ${timeout}s"; pid=; }
  fi
  if [ -n "$pid" ]; then
    # SIGCONT: a stopped (SIGSTOP) QEMU would hold SIGTERM pending until it runs again.
    kill -TERM "$pid" 2>/dev/null; kill -CONT "$pid" 2>/dev/null
    if gone_within 50; then
      took "SIGTERM"
    else
      kill -KILL "$pid" 2>/dev/null
      gone_within 50 || { echo "qemu (pid $pid) is still running after SIGKILL" >&2; exit 1; }
      took "SIGKILL"
    fi
  fi
fi
rm -f -- "$pidfile" "$sock"
