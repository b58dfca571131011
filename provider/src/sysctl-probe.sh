# shellcheck shell=sh
# A library for probes: `probe_sysctl OWNER KEY...` prints `<key> <value> <claimed:0|1>` for each
# key (a path below /proc/sys; the value is - when the key does not exist).
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
# remote shell's perl (remote-shell.sh), so that no process starts; returns 1 where that perl does
# not serve (PULUMI_HYPERVISOR_SYSCTLS unset: a session of its own, a loop without perl) or did
# not answer. The variable is FIFOS:PERL-PID:REQUEST. A reader takes the token, the one byte in
# FIFOSt, so that probes run side by side ask one at a time; writes the query "ID KEY..." into
# FIFOSq (opened for reading and writing, which never blocks); reads the answer from FIFOSa, its
# lines between "=ID" and an empty line; and puts the token back. ID is the request's number and a
# count of this shell's queries, so that an answer to some other query (perl empties the fifos once
# a command is over: a killed reader's should never be there) is skipped, not taken. A perl that is
# gone ends a fifo before the token or the answer comes: grep then.
sysctl_values() {
  _sv=${PULUMI_HYPERVISOR_SYSCTLS-}
  case $_sv in *:*:*) ;; *) return 1 ;; esac
  _sv_f=${_sv%%:*} _sv=${_sv#*:}
  _sv_n=$((${_sv_n:-0} + 1))
  _sv_id=${_sv#*:}.$_sv_n
  _sv_q=$_sv_id
  for _sv_k in "$@"; do
    # a word each in the query: a key with a space or a newline (none of the provider's) is grep's
    case $_sv_k in '' | *[[:space:]]*) return 1 ;; esac
    _sv_q="$_sv_q $_sv_k"
  done
  kill -0 "${_sv%%:*}" 2>/dev/null && [ -p "${_sv_f}q" ] && [ -p "${_sv_f}a" ] &&
    [ -p "${_sv_f}t" ] || return 1
  IFS= read -r _sv_l <"${_sv_f}t" || return 1
  printf '%s\n' "$_sv_q" 1<>"${_sv_f}q" || _sv_q=
  _sv_got='' _all=$_nl
  while [ -n "$_sv_q" ] && IFS= read -r _sv_l; do
    case $_sv_got:$_sv_l in
      "":"=$_sv_id") _sv_got=1 ;;
      :*) ;;
      *:)
        _sv_got=${_sv_got}e
        break
        ;;
      *:!) _sv_got=! ;;
      *) _all="$_all$_sv_l$_nl" ;;
    esac
  done <"${_sv_f}a"
  printf '\n' 1<>"${_sv_f}t"
  # 1e: the answer came whole, up to its empty line (not the end of the fifo: perl gone); !e: perl
  # declined (an answer over 8 kB)
  [ "$_sv_got" = 1e ]
}
