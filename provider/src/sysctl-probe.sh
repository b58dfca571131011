# shellcheck shell=sh
# A library for probes: `probe_sysctl OWNER KEY...` prints `<key> <value> <claimed:0|1>` for each
# key (a path below /proc/sys; the value is - when the key does not exist).
probe_sysctl() {
  _owner=$1
  shift
  [ "$#" -gt 0 ] || return 0
  # One process reads every key ("KEY:VALUE" lines; a key that does not exist prints nothing), not
  # one per key. The shell's read cannot do it: /proc/sys numbers come only in a single read(2).
  _nl='
'
  _all="$_nl$(cd /proc/sys 2>/dev/null && grep -s -H '' -- "$@")$_nl"
  for _k in "$@"; do
    _v=-
    case $_all in
      *"$_nl$_k:"*)
        _v=${_all#*"$_nl$_k:"}
        _v=${_v%%"$_nl"*}
        ;;
    esac
    if [ -e "/run/pulumi-hypervisor/sysctl/$_k/$_owner" ]; then _c=1; else _c=0; fi
    echo "$_k $_v $_c"
  done
}
