# shellcheck shell=sh
# A library: `is_link NAME` succeeds when NAME is a link of this network namespace, with no process:
# a name the provider's check allows (no `.`/`..`, no leading `-`) with an ifindex in sysfs
# (bonding_masters is a file there). Callers check that /sys/class/net exists first.
is_link() {
  case $1 in . | .. | -* | *[!A-Za-z0-9_.-]*) return 1 ;; esac
  [ -e "/sys/class/net/$1/ifindex" ]
}
