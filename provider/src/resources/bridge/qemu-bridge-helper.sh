#!/bin/sh
# Adds or removes the provider's `allow <bridge>` pair in /etc/qemu/bridge.conf:
# qemu-bridge-helper.sh add|remove BRIDGE. Edits only the provider's own marker+allow pair, under
# a lock, so concurrent bridges on one host do not lose each other's lines and the admin's lines
# stay as they are.
set -e
f=/etc/qemu/bridge.conf
m="# managed by pulumi-hypervisor: bridge $2"
mkdir -p /etc/qemu /run/pulumi-hypervisor
exec 9>/run/pulumi-hypervisor/bridge-conf.lock
flock 9
touch "$f"
t="$f.pulumi-tmp.$$"
awk -v m="$m" 'skip { skip = 0; next } $0 == m { skip = 1; next } { print }' "$f" > "$t"
if [ "$1" = add ]; then printf '%s\nallow %s\n' "$m" "$2" >> "$t"; fi
chmod 644 "$t"
mv -f "$t" "$f"
