#!/bin/sh
# Releases the host lock that an operation took (lock-take.sh) where no remote shell is left to
# take the one-way release frame: `lock-release.sh TOKEN/FIRSTKEY`, the same as remote-shell.sh's
# release, as a command. The holder reads FIRSTKEY.rel until its token comes; opened for reading
# and writing, the fifo never blocks this, even with the holder gone.
ref=$1 t=${1%%/*} k=${1#*/}
case $ref in */*) ;; *) exit 0 ;; esac
case $t in '' | *[!0-9a-f]*) exit 0 ;; esac
case $k in '' | */* | *[!A-Za-z0-9_.-]*) exit 0 ;; esac
f=/run/pulumi-hypervisor/locks/$k.rel
if [ -p "$f" ]; then printf '%s\n' "$t" 1<>"$f"; fi
