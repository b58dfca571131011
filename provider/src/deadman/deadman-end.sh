#!/bin/sh
# Ends an armed dead-man timer: deadman-end.sh confirm|restore ID. confirm (run over a new SSH
# login on the new path) stops the timer and keeps the change; restore stops it and restores the
# previous configuration now. Exits 3 when the host had already rolled back (the restore log on
# stderr), 4 when no timer was armed.
set -u
mode=$1
id=$2
dir=/run/pulumi-hypervisor/deadman/$id
unit=pulumi-hypervisor-deadman-$id
[ -f "$dir/fire.sh" ] || exit 4
exec 9>"$dir/lock"
flock 9
if [ -e "$dir/rolled-back" ]; then
  cat "$dir/restore.log" >&2
  exit 3
fi
if [ "$(cat "$dir/timer")" = systemd ]; then
  systemctl stop "$unit.timer" >/dev/null 2>&1 || true
elif [ -f "$dir/pid" ]; then
  kill -- "-$(cat "$dir/pid")" 2>/dev/null || true
fi
if [ "$mode" = confirm ]; then
  date +%s >"$dir/confirmed"
  exit 0
fi
exec 9>&-
sh "$dir/fire.sh" "$dir"
cat "$dir/restore.log" >&2
