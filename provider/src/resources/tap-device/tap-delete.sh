#!/bin/sh
# Deletes a tap: tap-delete.sh NAME [multi_queue]. `ip tuntap del` clears the tap's persist flag
# and detaches; the kernel can unregister the link a moment after ip exits (seen under parallel
# deletes), so wait until it is gone, at most 5 s. A tap still attached to a process (QEMU) stays:
# that is reported, not waited for. The kernel refuses to delete a single-queue tap that a process
# holds (EBUSY): its holders are named.
set -u
. ../../host/same-ns.sh
. ./tap-holders.sh
name=$1
shift
if ! ip tuntap del dev "$name" mode tap "$@"; then
  # EBUSY: a process holds the single-queue tap (its carrier forced off, the look did not scan)
  held=$(tap_holders "$name" | while read -r _ pid cmd; do printf ', pid %s (%s)' "$pid" "${cmd:-command unknown}"; done)
  if [ -n "$held" ]; then
    echo "$name is in use by ${held#, }; stop that process before deleting the tap" >&2
  fi
  exit 1
fi
i=0
while [ -e "/sys/class/net/$name" ]; do
  if [ "$i" -ge 50 ]; then
    echo "tap $name is still there 5 s after ip tuntap del (a process still has it open?)" >&2
    exit 1
  fi
  sleep 0.1
  i=$((i + 1))
done
