#!/bin/sh
# Deletes a disk image the provider created: qemu-delete-disk.sh PATH MARKER. Checked again here,
# at the moment of deleting: a regular file (not a symlink) whose device, inode and birth time are
# the ones its marker recorded when the provider created it; anything else at the path is kept.
set -e
if [ -f "$1" ] && [ ! -L "$1" ] && [ -f "$2" ] && [ "$(stat -c '%d %i %W' -- "$1")" = "$(head -n 1 -- "$2")" ]; then
  rm -f -- "$1"
  rm -f -- "$2"
  echo "removed $1"
else
  echo "kept $1: not the image the provider created there"
fi
