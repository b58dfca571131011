#!/bin/sh
# Runs every command even if one fails, so a move of addresses and routes never stops half-way;
# exits 1 when any failed. Each command arrives as positional parameters `N WORD...`.
rc=0
while [ $# -gt 0 ]; do
  n=$1
  shift
  # the command is built from references to positional parameters only, never from their text
  cmd='' k=1
  while [ "$k" -le "$n" ]; do
    cmd="$cmd \"\${$k}\""
    k=$((k + 1))
  done
  eval "$cmd" || rc=1
  shift "$n"
done
exit $rc
