#!/bin/sh
# Runs QMP commands on a guest's monitor for a plan step: qmp-step.sh SOCKET COMMAND...; fails
# (exit 1) when an answer is an error.
trap '' PIPE
. ./qmp.sh
out=$(qmp "$@") || exit $?
printf '%s\n' "$out"
case $out in *'{"error"'*) echo "qemu answered: $out" >&2; exit 1 ;; esac
exit 0
