# shellcheck shell=sh
# A library: `bridge_link NAME` sets $bridge_link_json to the line `ip -d -j link show dev NAME`
# prints, with the fields the probes parse (ifindex, ifname, the UP flag, mtu, address, kind
# bridge, ifalias), read from sysfs with no process: a look that needs only its bridge's link
# starts no `ip` (each costs the host about 4 ms of CPU). It fails, and the caller asks `ip`, unless
# NAME is a bridge of this namespace with no master whose files read as expected and whose ifalias
# is empty or one line of plain characters (which need no quoting in JSON); without sysfs it fails.
. ./is-link.sh
bridge_link() {
  bridge_link_json=
  is_link "$1" || return 1
  _bl=/sys/class/net/$1
  [ -d "$_bl/bridge" ] && [ ! -e "$_bl/master" ] || return 1
  {
    IFS= read -r _bl_index <"$_bl/ifindex" && IFS= read -r _bl_flags <"$_bl/flags" &&
      IFS= read -r _bl_mtu <"$_bl/mtu" && IFS= read -r _bl_address <"$_bl/address"
  } 2>/dev/null || return 1
  # sysfs prints an alias with a newline and none as an empty file; an alias of more lines is not
  # plain
  [ -r "$_bl/ifalias" ] || return 1
  _bl_alias='' _bl_more=''
  {
    IFS= read -r _bl_alias
    if IFS= read -r _bl_more || [ -n "$_bl_more" ]; then _bl_more=1; fi
  } <"$_bl/ifalias" 2>/dev/null
  [ -z "$_bl_more" ] || return 1
  case $_bl_index$_bl_mtu in '' | *[!0-9]*) return 1 ;; esac
  case $_bl_flags in 0x*) ;; *) return 1 ;; esac
  case ${_bl_flags#0x} in '' | *[!0-9a-fA-F]*) return 1 ;; esac
  case $_bl_address in '' | *[!0-9a-f:]*) return 1 ;; esac
  case $_bl_alias in *[!A-Za-z0-9\ ._:=+,/@-]*) return 1 ;; esac
  # IFF_UP is the flags' lowest bit
  if [ $((_bl_flags & 1)) -eq 1 ]; then _bl_flags='"UP"'; else _bl_flags=; fi
  # shellcheck disable=SC2034 # the caller reads it
  bridge_link_json="[{\"ifindex\":$_bl_index,\"ifname\":\"$1\",\"flags\":[$_bl_flags],\"mtu\":$_bl_mtu,\"address\":\"$_bl_address\",\"linkinfo\":{\"info_kind\":\"bridge\"}${_bl_alias:+,\"ifalias\":\"$_bl_alias\"}}]"
}
