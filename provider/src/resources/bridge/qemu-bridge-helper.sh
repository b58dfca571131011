#!/bin/sh
# Adds or removes the provider's `allow <bridge>` pair in /etc/qemu/bridge.conf:
# qemu-bridge-helper.sh add|remove BRIDGE. Edits only the provider's own marker+allow pair, under
# a lock, so concurrent bridges on one host do not lose each other's lines and the admin's lines
# stay as they are. A bridge.conf the provider created (recorded in $created) is deleted again when
# its last line goes; one the admin had stays, even empty.
set -e
f=/etc/qemu/bridge.conf
created=/etc/pulumi-hypervisor/bridge-conf-created
m="# managed by pulumi-hypervisor: bridge $2"
mkdir -p /etc/qemu /run/pulumi-hypervisor
exec 9>/run/pulumi-hypervisor/bridge-conf.lock
if ! flock -w 30 9; then
  echo "qemu-bridge-helper.sh: /run/pulumi-hypervisor/bridge-conf.lock is still held after 30 s by another process; $f not changed" >&2
  exit 1
fi
if [ ! -e "$f" ]; then
  [ "$1" = add ] || exit 0
  mkdir -p "${created%/*}"
  (umask 077; : > "$created")
  touch "$f"
fi
t="$f.pulumi-tmp.$$"
awk -v m="$m" 'skip { skip = 0; next } $0 == m { skip = 1; next } { print }' "$f" > "$t"
if [ "$1" = add ]; then printf '%s\nallow %s\n' "$m" "$2" >> "$t"; fi
if [ ! -s "$t" ] && [ -e "$created" ]; then
  rm -f -- "$t" "$f" "$created"
  exit 0
fi
chmod 644 "$t"
mv -f "$t" "$f"
