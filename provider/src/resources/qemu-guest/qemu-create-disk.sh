#!/bin/sh
# Creates a disk image unless something appeared at the path since it was observed:
# qemu-create-disk.sh PATH FORMAT SIZE.
set -e
mkdir -p -- "$(dirname -- "$1")"
if [ -e "$1" ]; then echo "$1 appeared since it was observed; not overwriting it" >&2; exit 1; fi
qemu-img create -q -f "$2" "$1" "$3"
