#!/bin/sh
# Claims (sets) or releases a sysctl for an owner: sysctl-claim.sh claim|release KEY OWNER VALUE
# [PROC-ROOT CLAIMS-DIR]. One claim file per resource that needs a value; the value found before
# the first claim is kept in `.original` and written back when the last claim goes, so a host
# setting made by someone else (libvirt, the admin) survives. flock serialises concurrent
# resources on one host.
set -e
action=$1 key=$2 owner=$3 value=$4 proc=${5:-/proc/sys} claims=${6:-/run/pulumi-hypervisor/sysctl}
d="$claims/$key" p="$proc/$key"
mkdir -p "$d"
exec 9>"$claims/.lock"
flock 9
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
