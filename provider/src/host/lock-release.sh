#!/bin/sh
# Releases the host lock that an operation took (lock-take.sh) where no remote shell is left to
# take the one-way release frame: `lock-release.sh TOKEN/FIRSTKEY`, the same as remote-shell.sh's
# release, as a command. The holder reads FIRSTKEY.rel until its token comes; opened for reading
# and writing, the fifo never blocks this, even with the holder gone.
. ./lock-keys.sh
lock_release /run/pulumi-hypervisor/locks "$1"
