# shellcheck shell=sh
# A library of the host lock's scripts (lock-take.sh, lock-hold.sh). `take_lock_keys DIR WAIT
# KEY...` opens DIR/KEY.lock as descriptors 3, 4, ... of the calling shell (at most 7 keys) and takes
# an flock on each, in the order given (sorted by the caller, so two operations never wait on each
# other crosswise), waiting at most WAIT seconds for each. On failure it returns 1 with the reason
# in $lock_why, naming the holders from every operation's op.*.since (its keys; the time it took
# them is the file's mtime, printed as HH:MM:SS UTC). `lock_since DIR TOKEN KEY...` writes that
# file for this operation, with builtins only.
# shellcheck disable=SC2034 # lock_why is read by the scripts that include this one
take_lock_keys() {
  _dir=$1 _wait=$2
  shift 2
  _n=3
  for _key in "$@"; do
    if [ "$_n" -gt 9 ]; then
      lock_why="more than 7 lock keys"
      return 1
    fi
    # the shell opens a descriptor with a literal number, hence eval; _n is a number and the path
    # a reference, never spliced text
    eval "exec $_n>>\"\$_dir/\$_key.lock\""
    if ! flock -w "$_wait" "$_n"; then
      # each holder's time is its file's mtime: writing it cost no process on the way in
      _others=
      for _f in "$_dir"/op.*.since; do
        [ -f "$_f" ] || continue
        _others="$_others$(date -u -r "$_f" +%H:%M:%S 2>/dev/null) $(cat "$_f" 2>/dev/null);"
      done
      lock_why="timed out after $_wait s waiting for the host lock on $_key (holders since, keys: ${_others%;})"
      return 1
    fi
    _n=$((_n + 1))
  done
}

lock_since() {
  _dir=$1 _token=$2
  shift 2
  printf '%s\n' "$*" >"$_dir/op.$_token.since"
}
