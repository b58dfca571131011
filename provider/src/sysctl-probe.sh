# shellcheck shell=sh
# A library for probes: `probe_sysctl OWNER KEY...` prints `<key> <value> <claimed:0|1>` for each
# key (a path below /proc/sys; the value is - when the key does not exist).
. ./host/perl-ask.sh
probe_sysctl() {
  _owner=$1
  shift
  [ "$#" -gt 0 ] || return 0
  # Every key is read at once ("KEY:VALUE" lines; a key that does not exist gives none), not one
  # process per key. The shell's read cannot do it: /proc/sys numbers come only in a single read(2).
  _nl='
'
  _all=
  sysctl_values "$@" || _all="$_nl$(cd /proc/sys 2>/dev/null && grep -s -H '' -- "$@")$_nl"
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

# `sysctl_values KEY...` sets _all to "\nKEY:VALUE\n..." as the grep above prints it, read by the
# remote shell's perl (remote-shell.sh: "KEY:LINE" for each line of each key), so that no process
# starts; returns 1 where that perl does not serve or did not answer (perl-ask.sh). A key is a word
# that does not start with "!" (perl's other queries): any other (none of the provider's) is grep's.
sysctl_values() {
  for _sv_k in "$@"; do
    case $_sv_k in '!'*) return 1 ;; esac
  done
  perl_ask "$@" || return 1
  _all=$_pa_all
}
