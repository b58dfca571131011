#!/bin/sh
# Holds the host lock of one provider operation whose commands run on sessions of their own (in a
# remote shell, lock-take.sh takes it instead, with no session): `lock-hold.sh TOKEN WAIT KEY...`
# takes an flock on /run/pulumi-hypervisor/locks/KEY.lock for each KEY (take_lock_keys in
# lock-keys.sh) and holds them until its session closes (printf fails on the closed pipe) or
# op.TOKEN.held is removed.
# Commands of the same operation wait for op.TOKEN.held (lock-wait.sh) before they run.
# Exit 3: the lock cannot be taken on this host (no flock, no writable /run): the operation runs
# unlocked, as before there was a lock.
dir=/run/pulumi-hypervisor/locks
token=$1 wait=$2
# Lock and state files name the resources being worked on: root alone reads them.
umask 077
shift 2
st="$dir/op.$token"
if ! mkdir -p "$dir" 2>/dev/null; then
  echo "no host lock: cannot create $dir" >&2
  exit 3
fi
if ! command -v flock >/dev/null 2>&1; then
  : >"$st.none"
  echo "no host lock: flock is not installed" >&2
  exit 3
fi
. ./lock-keys.sh
trap 'exit 1' HUP INT TERM PIPE
if ! take_lock_keys "$dir" "$wait" "$@"; then
  echo "$lock_why" | tee "$st.failed" >&2
  exit 1
fi
# only once they are this holder's: the .since files of keys another operation holds are its own
trap 'lock_gone "$dir" "$@"; rm -f "$st.held"' EXIT
lock_since "$dir" "$token" "$$" - "$@"
: >"$st.held"
# sleep gets none of the lock descriptors: when this shell is killed (the session closed), the
# locks go at once instead of with the sleep
while [ -e "$st.held" ]; do
  printf . || exit 0
  sleep 0.1 3>&- 4>&- 5>&- 6>&- 7>&- 8>&- 9>&-
done
