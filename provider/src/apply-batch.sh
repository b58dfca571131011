#!/bin/sh
# Runs the commands of one batch of plan steps in order. Each command arrives as positional
# parameters `OK-CODES HAS-STDIN N WORD...`: the exit codes that count as success
# (comma-separated), 1 when it reads the batch's stdin (at most one does; the others read
# /dev/null) and its N words. Each command's start is marked on stdout and stderr, so the caller
# can cut out the failing command's own output; the first failure is reported and ends the batch.
mark=@@pulumi-hypervisor-step
failed=@@pulumi-hypervisor-failed
i=0
while [ $# -gt 0 ]; do
  ok=$1 stdin=$2 n=$3
  shift 3
  printf '%s %d\n' "$mark" "$i"
  printf '%s %d\n' "$mark" "$i" >&2
  # the command is built from references to positional parameters only, never from their text
  cmd='' k=1
  while [ "$k" -le "$n" ]; do
    cmd="$cmd \"\${$k}\""
    k=$((k + 1))
  done
  if [ "$stdin" = 1 ]; then eval "$cmd"; else eval "$cmd" </dev/null; fi
  rc=$?
  shift "$n"
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
