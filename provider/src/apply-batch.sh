#!/bin/sh
# Runs the commands of one batch in order: plan steps, then read-only probes. Each command arrives
# as positional parameters `OK-CODES HAS-STDIN N WORD...`: the exit codes that count as success
# (comma-separated; `probe` for a probe), 1 when it reads the batch's stdin (at most one does; the
# others read /dev/null) and its N words. Each command's start is marked on stdout and stderr, so
# the caller can cut out each command's own output. The first failing step is reported and ends
# the batch (no probe runs after it); a probe's exit code follows its output on stderr and the
# next probe runs regardless, so one failing probe fails only its own observation.
mark=@@pulumi-hypervisor-step
failed=@@pulumi-hypervisor-failed
probe=@@pulumi-hypervisor-probe
probed=@@pulumi-hypervisor-probed
i=0
while [ $# -gt 0 ]; do
  ok=$1 stdin=$2 n=$3
  shift 3
  if [ "$ok" = probe ]; then
    printf '%s %d\n' "$probe" "$i"
    printf '%s %d\n' "$probe" "$i" >&2
  else
    printf '%s %d\n' "$mark" "$i"
    printf '%s %d\n' "$mark" "$i" >&2
  fi
  # the command is built from references to positional parameters only, never from their text
  cmd='' k=1
  while [ "$k" -le "$n" ]; do
    cmd="$cmd \"\${$k}\""
    k=$((k + 1))
  done
  if [ "$stdin" = 1 ]; then eval "$cmd"; else eval "$cmd" </dev/null; fi
  rc=$?
  shift "$n"
  if [ "$ok" = probe ]; then
    printf '\n%s %d %d\n' "$probed" "$i" "$rc" >&2
    i=$((i + 1))
    continue
  fi
  good=0
  for c in $(printf '%s' "$ok" | tr , ' '); do
    if [ "$rc" = "$c" ]; then good=1; fi
  done
  if [ "$good" = 0 ]; then
    printf '\n%s %d %d\n' "$failed" "$i" "$rc" >&2
    exit 1
  fi
  i=$((i + 1))
done
