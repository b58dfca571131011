# shellcheck shell=sh
# A library: `is_link NAME` succeeds when NAME is a link of this network namespace: an interface
# name (the characters the provider's check allows, no `.`/`..`, no leading `-`) with an ifindex
# in sysfs (bonding_masters is a file there), with no process. A probe asks `ip` for that link
# alone, by name: `ip ... dev NAME` fails for a link that is not there, and listing every link of a
# host with many costs the host and the controller per link. Callers check that /sys/class/net
# exists first (a host without sysfs has no answer here).
is_link() {
  case $1 in . | .. | -* | *[!A-Za-z0-9_.-]*) return 1 ;; esac
  [ -e "/sys/class/net/$1/ifindex" ]
}
