#!/bin/sh
# Creates a disk image unless something appeared at the path since it was observed, and records
# that the provider created it: qemu-create-disk.sh PATH FORMAT SIZE MARKER. The marker holds the
# image's device, inode and birth time (0 where the filesystem keeps none; it tells a file that
# reuses a freed inode number apart), then its path: only an image whose marker matches is ever
# grown as raw or deleted (deleteDisks).
set -e
mkdir -p -- "$(dirname -- "$1")"
if [ -e "$1" ] || [ -L "$1" ]; then echo "$1 appeared since it was observed; not overwriting it" >&2; exit 1; fi
qemu-img create -q -f "$2" -- "$1" "$3"
mkdir -p -- "$(dirname -- "$4")"
printf '%s\n%s\n' "$(stat -c '%d %i %W' -- "$1")" "$1" >"$4.tmp"
mv -f -- "$4.tmp" "$4"
