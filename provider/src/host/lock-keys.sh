# shellcheck shell=sh
# A library of the host lock's scripts (lock-take.sh, lock-hold.sh). `take_lock_keys DIR WAIT
# KEY...` opens DIR/KEY.lock as descriptors 3, 4, ... of the calling shell (at most 6 keys: 9 is
# lock-take.sh's release fifo) and takes an flock on each, in the order given (sorted by the
# caller, so two operations never wait on each other crosswise), waiting at most WAIT seconds for
# each. On failure it returns 1 with the reason in $lock_why, naming the holder of the key it
# waited for from DIR/KEY.since (its operation, pid, connection and keys; the time it took them
# is the file's mtime, printed as HH:MM:SS UTC). `lock_since DIR TOKEN PID ANCHOR KEY...` writes KEY.since for
# each key the operation holds (ANCHOR: the connection's sshd, "-" for a holder session), and
# `lock_gone DIR KEY...` empties them when the holder ends, with builtins only: the files stay,
# one per key like the .lock files, so no lock costs an rm. `lock_ref_ok REF` says whether REF
# names a lock as releases do (TOKEN/FIRSTKEY: hex digits, one slash, a key's characters);
# `lock_release DIR REF` releases it (the holder reads FIRSTKEY.rel until its token comes);
# `lock_release_connection DIR ANCHOR` releases every holder of a connection that is gone
# (lock-take.sh's watcher). Each is builtins only.
# shellcheck disable=SC2034 # lock_why is read by the scripts that include this one
take_lock_keys() {
  _dir=$1 _wait=$2
  shift 2
  _n=3
  for _key in "$@"; do
    if [ "$_n" -gt 8 ]; then
      lock_why="more than 6 lock keys"
      return 1
    fi
    # the shell opens a descriptor with a literal number, hence eval; _n is a number and the path
    # a reference, never spliced text
    eval "exec $_n>>\"\$_dir/\$_key.lock\""
    if ! flock -w "$_wait" "$_n"; then
      # the holder's time is its file's mtime: writing it cost no process on the way in
      _held=
      if [ -s "$_dir/$_key.since" ]; then
        _held="$(date -u -r "$_dir/$_key.since" +%H:%M:%S 2>/dev/null) $(cat "$_dir/$_key.since" 2>/dev/null)"
      fi
      lock_why="timed out after $_wait s waiting for the host lock on $_key (holder since, operation, pid, connection, keys: ${_held:-unknown})"
      return 1
    fi
    _n=$((_n + 1))
  done
}

lock_since() {
  _dir=$1 _token=$2 _pid=$3 _anchor=$4
  shift 4
  for _key in "$@"; do
    printf '%s %s %s %s\n' "$_token" "$_pid" "$_anchor" "$*" >"$_dir/$_key.since"
  done
}

lock_gone() {
  _dir=$1
  shift
  for _key in "$@"; do
    : >"$_dir/$_key.since"
  done
}

lock_release_connection() {
  _dir=$1 _anchor=$2
  for _f in "$_dir"/*.since; do
    _t='' _a='' _k=''
    { read -r _t _ _a _k _ <"$_f"; } 2>/dev/null
    # once per holder: the .since of its first key, whose fifo it reads
    if [ -n "$_t" ] && [ "$_a" = "$_anchor" ] && [ "$_f" = "$_dir/$_k.since" ]; then
      lock_release "$_dir" "$_t/$_k"
    fi
  done
}

# The loop's perl checks and releases a reference the same way (remote-shell.sh, sub release):
# a change here goes there too.
lock_ref_ok() {
  case $1 in
    */*/* | */ | /* | *[!0-9a-f]*/* | */*[!A-Za-z0-9_.-]*) return 1 ;;
    */*) return 0 ;;
  esac
  return 1
}

# A fifo opened for reading and writing never blocks, even with no holder reading it; a late
# release (the holder gone, or another operation's now) is read by nobody or skipped.
lock_release() {
  lock_ref_ok "$2" || return 0
  if [ -p "$1/${2#*/}.rel" ]; then
    { printf '%s\n' "${2%%/*}" 1<>"$1/${2#*/}.rel"; } 2>/dev/null
  fi
  return 0
}
