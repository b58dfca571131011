#!/bin/sh
# Takes the host lock of one provider operation inside a remote shell and runs the operation's
# first command: `lock-take.sh TOKEN WAIT KEY... -- CMD...`. It takes an flock on
# /run/pulumi-hypervisor/locks/KEY.lock for each KEY (in the order given, sorted by the caller, so
# two operations never wait on each other crosswise), waiting at most WAIT seconds for each, and
# leaves them to a holder process, which holds them until the operation releases them (the shell
# opens the fifo op.TOKEN.rel after the operation's last command, or on a "U TOKEN" frame)
# or the connection's sshd is gone ($PULUMI_HYPERVISOR_SHELL_ANCHOR, set by remote-shell.sh), so a
# lost provider never keeps a lock. Taking the lock rides in the first command's round trip and
# holds no SSH session.
# Exits 124 outside a remote shell (no anchor: the client holds the lock the other way, lock.ts),
# 125 with "host lock: ..." on stderr when the lock was not taken. A host that cannot lock (no
# flock, no writable /run) runs the command unlocked, as before there was a lock.
dir=/run/pulumi-hypervisor/locks
token=$1 wait=$2
shift 2
keys=
while [ "$#" -gt 0 ] && [ "$1" != -- ]; do
  keys="$keys $1"
  shift
done
[ "$#" -gt 0 ] && shift
anchor=${PULUMI_HYPERVISOR_SHELL_ANCHOR-}
case $anchor in
  '' | *[!0-9]*)
    echo "host lock: not in a remote shell" >&2
    exit 124
    ;;
esac
if { ! [ -d "$dir" ] && ! mkdir -p "$dir" 2>/dev/null; } || ! command -v flock >/dev/null 2>&1; then
  exec "$@"
fi
# Lock and state files name the resources being worked on: root alone reads them.
umask 077
st="$dir/op.$token"
# An flock belongs to the open file, so the holder started below, which inherits the descriptors,
# keeps the locks after this process closes its copies.
. ./lock-keys.sh
# shellcheck disable=SC2086 # the keys are plain names, one word each (lock.ts checks them)
if ! take_lock_keys "$dir" "$wait" $keys; then
  echo "host lock: $lock_why" >&2
  exit 125
fi
if ! mkfifo "$st.rel"; then
  echo "host lock: cannot create $st.rel" >&2
  exit 125
fi
# shellcheck disable=SC2086
lock_since "$dir" "$token" $keys
# The holder blocks opening the fifo op.TOKEN.rel until the release opens it (remote-shell.sh's
# release) or its watcher does, once the anchor is gone or the release's mark is there: no process runs while it holds. The watcher
# and its sleep get none of the lock descriptors, so the locks go with the holder.
(
  trap 'rm -f "$st.rel" "$st.since" "$st.done"' EXIT
  trap 'exit 1' HUP INT TERM PIPE
  (
    exec 3>&- 4>&- 5>&- 6>&- 7>&- 8>&- 9>&-
    # a release marks op.TOKEN.done before it opens the fifo: one that came before the holder
    # was in its open ends it here, within a second
    while [ -p "$st.rel" ] && ! [ -e "$st.done" ] && kill -0 "$anchor" 2>/dev/null; do sleep 1; done
    # opened for reading and writing, which never blocks: the holder's open returns, and the
    # holder ends this watcher. Again each second while the fifo is there, for a holder that was
    # not in its open yet; at most 30 times, for one killed before its trap removed the fifo.
    n=0
    while [ -p "$st.rel" ] && [ "$n" -lt 30 ]; do
      : <>"$st.rel"
      n=$((n + 1))
      sleep 1
    done
  ) &
  watcher=$!
  : <"$st.rel"
  kill "$watcher" 2>/dev/null
) </dev/null >/dev/null 2>&1 &
exec 3>&- 4>&- 5>&- 6>&- 7>&- 8>&- 9>&-
. ./run-wrapped.sh
run_wrapped "$@"
