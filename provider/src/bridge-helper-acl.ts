// qemu-bridge-helper's ACL file: a Bridge adds and removes its own `allow` line there, and a
// QemuGuest reads it before starting with a bridged NIC.

/** The path qemu-bridge-helper reads its allow/deny rules from (Debian's build). */
export const BRIDGE_CONF = "/etc/qemu/bridge.conf";
