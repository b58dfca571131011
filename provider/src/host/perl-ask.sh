# shellcheck shell=sh
# A library for commands run in a remote shell: `perl_ask WORD...` asks the loop's perl
# (remote-shell.sh) the query "ID WORD..." and sets _pa_all to the lines of its answer, each
# between newlines ("\nLINE\n..."); returns 1 where that perl does not serve
# (PULUMI_HYPERVISOR_PERL unset: a session of its own, a loop without perl) or did not answer
# whole. The variable is FIFOS:PERL-PID:REQUEST. The asker takes the token, the one byte in
# FIFOSt, so that commands run side by side ask one at a time; writes the query into FIFOSq
# (opened for reading and writing, which never blocks); reads the answer from FIFOSa, its lines
# between "=ID" and an empty line; and puts the token back. ID is the request's number and a
# count of this shell's queries, so that an answer to some other query (perl empties the fifos once
# a command is over: a killed asker's should never be there) is skipped, not taken. A perl that is
# gone ends a fifo before the token or the answer comes. Builtins only: no process starts.
# What perl answers: sysctl-probe.sh (sysctl values), procs-named.sh (processes by name),
# sshd-ports.sh (the ports they listen on), lock-take.sh (a host lock it holds).
perl_ask() {
  _pa=${PULUMI_HYPERVISOR_PERL-}
  case $_pa in *:*:*) ;; *) return 1 ;; esac
  _pa_f=${_pa%%:*} _pa=${_pa#*:}
  _pa_n=$((${_pa_n:-0} + 1))
  _pa_id=${_pa#*:}.$_pa_n
  _pa_q=$_pa_id
  for _pa_w in "$@"; do
    # a word each in the query
    case $_pa_w in '' | *[[:space:]]*) return 1 ;; esac
    _pa_q="$_pa_q $_pa_w"
  done
  kill -0 "${_pa%%:*}" 2>/dev/null && [ -p "${_pa_f}q" ] && [ -p "${_pa_f}a" ] &&
    [ -p "${_pa_f}t" ] || return 1
  IFS= read -r _pa_l <"${_pa_f}t" || return 1
  printf '%s\n' "$_pa_q" 1<>"${_pa_f}q" || _pa_q=
  _pa_got='' _pa_all='
'
  while [ -n "$_pa_q" ] && IFS= read -r _pa_l; do
    case $_pa_got:$_pa_l in
      "":"=$_pa_id") _pa_got=1 ;;
      :*) ;;
      *:)
        _pa_got=${_pa_got}e
        break
        ;;
      *:!) _pa_got=! ;;
      *) _pa_all="$_pa_all$_pa_l
" ;;
    esac
  done <"${_pa_f}a"
  printf '\n' 1<>"${_pa_f}t"
  # 1e: the answer came whole, up to its empty line (not the end of the fifo: perl gone); !e: perl
  # declined (an answer over 8 kB)
  [ "$_pa_got" = 1e ]
}
