#!/bin/sh
# Deletes a tap: tap-delete.sh NAME [multi_queue]. `ip tuntap del` clears the tap's persist flag
# and detaches; the kernel can unregister the link a moment after ip exits (seen under parallel
# deletes), so wait until it is gone, at most 5 s. A tap still attached to a process (QEMU) stays:
# that is reported, not waited for.
set -u
name=$1
shift
ip tuntap del dev "$name" mode tap "$@" || exit
i=0
while [ -e "/sys/class/net/$name" ]; do
  if [ "$i" -ge 50 ]; then
    echo "tap $name is still there 5 s after ip tuntap del (a process still has it open?)" >&2
    exit 1
  fi
  sleep 0.1
  i=$((i + 1))
done
