#!/bin/sh
# Claims (sets) or releases a sysctl for an owner: sysctl-claim.sh claim|release KEY OWNER VALUE
# [PROC-ROOT CLAIMS-DIR [WAIT-SECONDS]]. One claim file per resource that needs a value; the value
# found before the first claim is kept in `.original` and written back when the last claim goes, so
# a host setting made by someone else (libvirt, the admin) survives. flock serialises concurrent
# resources on one host; a claim holds it for milliseconds, so a lock still held after WAIT seconds
# (30 by default) is a stuck holder, and the step fails saying so instead of hanging.
set -e
action=$1 key=$2 owner=$3 value=$4 proc=${5:-/proc/sys} claims=${6:-/run/pulumi-hypervisor/sysctl}
wait=${7:-30}
d="$claims/$key" p="$proc/$key"
# a process only the first time a key is claimed
[ -d "$d" ] || mkdir -p "$d"
exec 9>"$claims/.lock"
if ! flock -w "$wait" 9; then
  echo "sysctl-claim.sh: $claims/.lock is still held after $wait s by another process (see: fuser -v $claims/.lock); $action of $key for $owner not done" >&2
  exit 1
fi
if [ "$action" = claim ]; then
  [ -e "$d/.original" ] || cat "$p" > "$d/.original"
  : > "$d/$owner"
  echo "$value" > "$p"
else
  rm -f -- "$d/$owner"
  for c in "$d"/*; do [ -e "$c" ] && exit 0; done
  # the interface may be gone (a tap deleted by hand): then there is nothing to restore
  if [ -e "$d/.original" ]; then [ ! -e "$p" ] || cat "$d/.original" > "$p"; rm -f -- "$d/.original"; fi
fi
exit 0
