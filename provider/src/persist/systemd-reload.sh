#!/bin/sh
# Makes systemd read the unit files written before this step: systemd-reload.sh. It runs
# `systemctl daemon-reload` unless a reload that began after this step did has already ended
# well: that reload read these files, which were written before it began.
#
# Operations on one host run at once (an up sends them together), and each one that writes or
# removes a unit needs a reload. A reload re-reads every unit and runs the generators, about
# 160 ms of a small host's CPU, and systemd does one at a time: twenty taps created at once
# queued twenty reloads. Here the operations that reach this step while a reload runs share the
# next one.
#
# /run/pulumi-hypervisor/systemd-reload/started counts the reloads this script began since boot
# (tmpfs). It is replaced whole by a rename, so an unlocked read sees the old count or the new
# one, never part of one. The step reads it, then takes the lock that each reload here holds
# while it runs. A higher count than the one read means a reload began after the read, so after
# this operation's files were written, and ended (it let go of the lock): nothing to do.
# Otherwise the step counts one more and reloads, holding the lock; a reload that fails puts the
# count back, so the operations waiting on it reload themselves.
#
# Without flock or a writable /run, or after waiting five minutes for the lock, the step reloads
# every time, as before.
d=/run/pulumi-hypervisor/systemd-reload
count() {
  c=
  { read -r c <"$d/started"; } 2>/dev/null
  case $c in '' | *[!0-9]*) c=0 ;; esac
}
set_count() {
  echo "$1" >"$d/started.tmp" && mv -f -- "$d/started.tmp" "$d/started"
}
count
seen=$c
if { [ -d "$d" ] || mkdir -p -- "$d"; } 2>/dev/null && [ -w "$d" ] &&
  command -v flock >/dev/null 2>&1 && command exec 9>>"$d/lock" && flock -w 300 9; then
  count
  [ "$c" -le "$seen" ] || exit 0
  now=$c
  set_count $((now + 1)) || exec systemctl daemon-reload
  systemctl daemon-reload && exit 0
  rc=$?
  set_count "$now"
  exit "$rc"
fi
exec systemctl daemon-reload
