#!/bin/sh
# The TapDevice probe, one round trip: tap-probe.sh NAME USER GROUP BRIDGE-UNIT-FILE UNIT
# UNIT-FILE BOOT-SCRIPT NM-KEEPOFF-FILE NETWORKD-KEEPOFF-FILE HOLDERS LINKS VALUES ROUTES
# SYSCTL-KEY...
# Host routes v4/v6 (ROUTES=all: every one, which a routed tap's plan checks its addresses against;
# ROUTES=tap: those via the tap alone), the LINKS (space-separated: the tap, its bridge, its uplink)
# with tun details, the sysctls (those asked for plus every claim this tap holds, found in the
# claims directory so a claim left by an older configuration is released too), the tap's owner/group
# (sysfs has them as numbers, `ip -j` prints names when it can), the desired owner/group resolved on
# the host, and the processes holding the tap (tap-holders.sh; HOLDERS=0 skips that scan, for a look
# that is never planned from, and says so). Then whether the bridge
# has a unit of the provider's, which network managers run, and the tap's persisted layer (its unit,
# boot script and the files that keep the managers off it).
. ../../host/probe.sh
. ../../sysctl-probe.sh
. ../../persist/unit-state.sh
. ../../persist/persist-probe.sh
. ../../persist/keepoff-probe.sh
. ../../host/same-ns.sh
. ../../host/is-link.sh
. ../../host/bridge-link.sh
. ./tap-holders.sh
name=$1 user=$2 group=$3 bridge_unit=$4 owner="tapdevice-$1"
unit=$5 unit_file=$6 boot_script=$7 nm_file=$8 networkd_file=$9 holders=${10} links=${11}
values=${12} routes=${13}
shift 13
# One `ip` for the routes of both families and the links asked for (each process costs the host
# about 1.4 ms of CPU): a JSON line each, routes first. `table all` is the only listing that has
# both families; the parser keeps the main table's and drops the defaults that -d adds. Only the
# links that exist are asked for (ip -batch stops at a failing line), by name. Without
# /sys/class/net (no sysfs) every link is listed, and every route.
# ROUTES is `tap ADDRESS...`: the routes via the tap (those it added, to remove them; asked for with
# `dev`, the kernel leaves the others out of the dump, and `ip` leaves out each route's `dev`, which
# the routes-via section gives instead; a tap that does not exist has none, printed by the shell),
# then for each address of a routed tap its host routes via any device (`exact`, the clash check),
# a listing each, named in the routes-exact section. Any other ROUTES lists every route.
# After an apply, whose last ip lines run first in this ip (ab_ip_run), the tap exists.
q=
link_after() { is_link "$1" || { [ -n "${ab_ip_lines+x}" ] && [ "$1" = "$name" ]; }; }
add() { q="${q:+$q
}$1"; }
via=
case $routes in tap | "tap "*) [ ! -d /sys/class/net ] || via=$name ;; esac
section routes-via
[ -z "$via" ] || echo "$via"
section routes-exact
exact=
if [ -n "$via" ]; then
  set -f
  for a in ${routes#tap}; do
    case $a in *[!0-9A-Fa-f:.]*) continue ;; *:*) a=$a/128 ;; *) a=$a/32 ;; esac
    exact="$exact $a"
    echo "$a"
  done
  set +f
fi
section links
if [ -z "$via" ]; then
  add 'route show table all'
elif link_after "$via"; then
  add "route show table all dev $via"
else
  echo '[]'
fi
for a in $exact; do add "route show table all exact $a"; done
# A bridge that sysfs describes whole is printed from there after ip's lines (bridge-link.sh): the
# look before a tap's create, with the tap not there yet, then starts no process at all. After an
# apply the links are asked of the ip that runs its lines anyway.
bridges=
if [ -d /sys/class/net ]; then
  set -f
  for l in $links; do
    if [ -z "${ab_ip_lines+x}" ] && bridge_link "$l"; then
      bridges="$bridges$bridge_link_json
"
    elif link_after "$l"; then
      add "link show dev $l"
    fi
  done
  set +f
else
  add 'link show'
fi
if [ -n "${ab_ip_lines+x}" ]; then
  ab_ip_run "$q" || exit
elif [ -n "$q" ]; then
  # a here-document, not a pipe from printf: the shell writes it itself, with no process of its own
  ip -d -j -batch - <<EOF || exit
$q
EOF
fi
printf '%s' "$bridges"
section sysctls
# A claim is the file KEY/OWNER below the claims directory, KEY a /proc/sys path (net/ipv4/ip_forward,
# net/ipv4/conf/IF/proxy_arp): found by the shell's globs, with no process (find and sed cost the
# host about 1.3 ms per probe). A tap claims keys 3 and 5 levels deep; the globs look up to 8.
claimed=
c=/run/pulumi-hypervisor/sysctl
if [ -d "$c" ]; then
  for f in "$c"/*/"$owner" "$c"/*/*/"$owner" "$c"/*/*/*/"$owner" "$c"/*/*/*/*/"$owner" \
    "$c"/*/*/*/*/*/"$owner" "$c"/*/*/*/*/*/*/"$owner" "$c"/*/*/*/*/*/*/*/"$owner" \
    "$c"/*/*/*/*/*/*/*/*/"$owner"; do
    [ -f "$f" ] || continue
    f=${f#"$c"/}
    claimed="$claimed ${f%/*}"
  done
fi
# VALUES=if-tap: a plan needs the values only of a tap that exists or holds claims (one that is not
# routed), so a create's first look and a delete's last one read none (a grep where the remote
# shell's perl does not read them).
if [ "$values" != if-tap ] || [ -n "$claimed" ] || [ ! -d /sys/class/net ] ||
  [ -e "/sys/class/net/$name/ifindex" ]; then
  set -f
  # shellcheck disable=SC2086 # one word per key (keys have no spaces), globbing is off
  probe_sysctl "$owner" "$@" $claimed
  set +f
fi
section ids
d=/sys/class/net/$name
if [ -r "$d/owner" ] && { IFS= read -r v <"$d/owner"; } 2>/dev/null; then echo "owner $v"; fi
if [ -r "$d/group" ] && { IFS= read -r v <"$d/group"; } 2>/dev/null; then echo "group $v"; fi
if [ -n "$user" ]; then echo "uid $(getent passwd "$user" | cut -d: -f3)"; fi
if [ -n "$group" ]; then echo "gid $(getent group "$group" | cut -d: -f3)"; fi
section holders
# only a tap that exists has holders: a create's first look skips the scan (tap-holders.sh), and so
# does a look-only probe, and the look of a single-queue tap with its carrier off and no sysctl
# claims (which a delete would release before the kernel refuses to delete a held tap)
[ "$holders" = 1 ] || echo not-probed
if [ "$holders" = 1 ] && [ -e "$d" ]; then
  if [ -z "$claimed" ] && tap_unattached "$name"; then
    echo unattached
  else
    tap_holders "$name"
  fi
fi
section bridge-unit
if [ -n "$bridge_unit" ] && [ -f "$bridge_unit" ]; then echo yes; else echo no; fi
# one systemctl for networkd and the tap's unit
ask_units systemd-networkd.service "$unit"
keepoff_probe
persist_probe "$unit" "$unit_file" "$boot_script" "$nm_file" "$networkd_file"
exit 0
