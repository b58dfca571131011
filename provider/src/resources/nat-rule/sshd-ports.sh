# shellcheck shell=sh
# A library for the NatRule probe: `sshd_ports PROC` prints the TCP ports that processes named sshd
# listen on in this network namespace, one per line (a port on both families twice), PROC being
# where proc is mounted (/proc).
#
# `ss -p` would name each socket's process, but it reads the link of every open file of every
# process on the host to do so: 80-89 ms of CPU per look with 20,000 open files, as on a
# hypervisor with many guests. Only sshd's files are looked at here: its processes are found by
# their name (procs-named.sh: one grep of every process's comm), the inode of each of their open files is the
# `ino:` line of its fdinfo (Linux 5.14 and later; where that is missing, one `stat` of the files),
# and `ss -e` gives each listening socket's inode. The cost follows the number of processes, not
# of open files: 5.3-5.7 ms with 70 processes, 14-16 ms with 1,000 (`ss -p`: 4.5-4.8, 39-40). A
# socket held by a process that is not named sshd (systemd's socket activation with one sshd per
# connection) is not found, as with `ss -p`; the plan guards the port the provider's own session
# came in on besides these ($SSH_CONNECTION).
#
# In a remote shell the loop's perl does all of it (perl-ask.sh: "!listen"), reading the sockets
# from /proc/self/net/tcp and tcp6, so no process starts and no byte is read a system call at a
# time.
. ../../host/procs-named.sh
. ../../host/perl-ask.sh
sshd_ports() {
  _proc=$1
  if perl_ask '!listen' sshd "$_proc"; then
    printf '%s' "${_pa_all#?}"
    return 0
  fi
  _nl='
'
  _inos=$_nl _slow=
  procs_named sshd "$_proc"
  for _p in $procs; do
    for _f in "$_p"/fdinfo/[0-9]*; do
      _i=
      {
        while read -r _k _v; do
          if [ "$_k" = ino: ]; then
            _i=$_v
            break
          fi
        done <"$_f"
      } 2>/dev/null
      case $_i in
        '' | *[!0-9]*) _slow="$_slow $_p/fd/${_f##*/}" ;;
        *) _inos="$_inos$_i$_nl" ;;
      esac
    done
  done
  if [ -n "$_slow" ]; then
    # shellcheck disable=SC2086 # /proc paths, a word each
    _inos="$_inos$(stat -L -c %i $_slow 2>/dev/null)$_nl"
  fi
  [ "$_inos" != "$_nl" ] || return 0
  # "LISTEN RECV-Q SEND-Q LOCAL PEER uid:N ino:N sk:N ..." (uid only when not 0); a last line
  # without its newline counts too
  ss -Hltne 2>/dev/null | while read -r _ _ _ _local _ _rest || [ -n "$_rest" ]; do
    set -f
    for _w in $_rest; do
      case $_w in
        ino:*) case $_inos in *"$_nl${_w#ino:}$_nl"*) printf '%s\n' "${_local##*:}" ;; esac ;;
      esac
    done
    set +f
  done
}
