# shellcheck shell=sh
# A library: `qmp SOCKET COMMAND...` talks to QEMU's QMP monitor through socat (Debian package
# socat; a host may have no python, and the shell cannot open a unix socket). It negotiates
# capabilities, sends each command (one JSON object per argument) and prints each answer line
# (`{"return"...` or `{"error"...`) in order; events are skipped. Returns 3 when socat is missing,
# 1 when the monitor does not answer, 124 when it did not answer within QMP_SECONDS (default 10).
# socat runs as a coprocess on two FIFOs so the client sends one command, waits for its answer and
# only then sends the next: QEMU drops the queued commands of a client that closes its end early
# (monitor_qmp_cleanup_queues on CLOSED), so "send everything, then EOF" would lose answers.
# The deadline covers connect() and every answer: socat's -T (inactivity) does not cover a
# connect() that blocks, which it does when QEMU is frozen or another client holds the monitor and
# the listen backlog is full. socat 1.7.4's (Debian 12) connect-timeout makes connect()
# non-blocking, and on a unix socket whose backlog is full that fails at once (EAGAIN) instead of
# waiting, and it does not cover the answers. So coreutils `timeout` ends socat, its output FIFO
# reaches EOF and the reads here return.
qmp() {
  trap '' PIPE
  command -v socat >/dev/null 2>&1 || { echo "socat is not installed on the host; install socat (QMP needs it)" >&2; return 3; }
  _qs=$1; shift
  _qt=${QMP_SECONDS:-10}
  _qd=$(mktemp -d) || return 1
  mkfifo "$_qd/in" "$_qd/out" || { rm -rf "$_qd"; return 1; }
  timeout -k 1 "$_qt" socat -T "$_qt" "UNIX-CONNECT:$_qs" - <"$_qd/in" >"$_qd/out" 2>"$_qd/err" &
  _qp=$!
  exec 8>"$_qd/in" 9<"$_qd/out"
  _qrc=0
  if IFS= read -r _ql <&9; then
    for _qc in '{"execute":"qmp_capabilities"}' "$@"; do
      printf '%s\n' "$_qc" >&8 2>/dev/null
      _qok=0
      while IFS= read -r _ql <&9; do
        case $_ql in
          '{"return"'*|'{"error"'*)
            [ "$_qc" = '{"execute":"qmp_capabilities"}' ] || printf '%s\n' "$_ql"
            _qok=1; break ;;
        esac
      done
      [ $_qok = 1 ] || { _qrc=1; break; }
    done
  else
    _qrc=1
  fi
  exec 8>&- 9<&-
  wait $_qp 2>/dev/null
  # timeout exits 124 when it ended socat (137 when it had to kill it).
  case $? in 124|137) [ $_qrc = 0 ] || _qrc=124 ;; esac
  if [ $_qrc = 124 ]; then
    echo "qmp: no answer on $_qs within ${_qt}s (QEMU frozen, or another client holds the monitor)" >&2
  elif [ $_qrc != 0 ]; then
    echo "qmp: no answer on $_qs: $(tr '\n' ' ' <"$_qd/err")" >&2
  fi
  rm -rf "$_qd"
  return $_qrc
}
