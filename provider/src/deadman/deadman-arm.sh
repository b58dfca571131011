#!/bin/sh
# Arms the dead-man timer before a change to the management path: deadman-arm.sh ID SECONDS
# [FILE...], the restore script on stdin. Writes the restore script and a snapshot (links,
# addresses, routes of every table with all their attributes, and each FILE, or that it was
# absent), then schedules deadman-fire.sh in SECONDS: a transient systemd timer where PID 1 is
# systemd, a detached sleep elsewhere. Only deadman-end.sh confirm stops it.
set -eu
id=$1
secs=$2
shift 2
dir=/run/pulumi-hypervisor/deadman/$id
unit=pulumi-hypervisor-deadman-$id
if [ -d /run/systemd/system ]; then
  systemctl stop "$unit.timer" "$unit.service" >/dev/null 2>&1 || true
  systemctl reset-failed "$unit.timer" "$unit.service" >/dev/null 2>&1 || true
fi
if [ -f "$dir/pid" ]; then kill -- "-$(cat "$dir/pid")" 2>/dev/null || true; fi
rm -rf "$dir"
mkdir -p "$dir/files"
chmod 700 "$dir"
cat >"$dir/restore.sh"
ip -d -j addr show >"$dir/links.json"
ip -d -j route show table all >"$dir/routes4.json"
ip -6 -d -j route show table all >"$dir/routes6.json"
: >"$dir/files.list"
n=0
for f in "$@"; do
  n=$((n + 1))
  if [ -f "$f" ]; then cp -p -- "$f" "$dir/files/$n"; fi
  printf '%s %s\n' "$n" "$f" >>"$dir/files.list"
done
cat >"$dir/fire.sh" <<'FIRE'
# Restores the snapshot's files (a file that was absent is removed), then runs the restore
# script; under the lock, so a confirm and a restore never both happen.
dir=$1
exec 9>"$dir/lock"
flock 9
if [ -e "$dir/confirmed" ] || [ -e "$dir/rolled-back" ]; then exit 0; fi
{
  while read -r n f; do
    if [ -f "$dir/files/$n" ]; then cp -p -- "$dir/files/$n" "$f"; else rm -f -- "$f"; fi
  done <"$dir/files.list"
  sh "$dir/restore.sh"
} >"$dir/restore.log" 2>&1
date +%s >"$dir/rolled-back"
FIRE
if [ -d /run/systemd/system ] && command -v systemd-run >/dev/null 2>&1; then
  systemd-run --quiet --unit="$unit" --on-active="$secs" --timer-property=AccuracySec=1s \
    /bin/sh "$dir/fire.sh" "$dir"
  echo systemd >"$dir/timer"
else
  # setsid: its own session and process group, so it outlives this SSH session and the
  # confirm can stop the group (sleep included) at once.
  # shellcheck disable=SC2016 # expanded by the inner sh from its own parameters
  setsid sh -c 'sleep "$1"; exec sh "$2/fire.sh" "$2"' deadman "$secs" "$dir" \
    </dev/null >/dev/null 2>&1 &
  echo "$!" >"$dir/pid"
  echo sleep >"$dir/timer"
fi
date +%s >"$dir/armed"
