#!/bin/sh
# Takes the host lock of one provider operation inside a remote shell and runs the operation's
# first command: `lock-take.sh TOKEN WAIT KEY... -- CMD...`. It takes an flock on
# /run/pulumi-hypervisor/locks/KEY.lock for each KEY (in the order given, sorted by the caller, so
# two operations never wait on each other crosswise), waiting at most WAIT seconds for each, and
# leaves them to a holder process, which holds them until the operation releases them or the
# connection's sshd is gone ($PULUMI_HYPERVISOR_SHELL_ANCHOR, set by remote-shell.sh), so a lost
# provider never keeps a lock. A release is TOKEN written into the fifo FIRSTKEY.rel, which only
# this operation reads while it holds FIRSTKEY (remote-shell.sh writes it after the operation's
# last command, or on a "U TOKEN/FIRSTKEY" frame). Taking the lock rides in the first
# command's round trip and holds no SSH session.
#
# The files are one per key and stay, like the .lock files: KEY.since names the holder while it
# holds (TOKEN, its pid, the connection's anchor, its keys; emptied when it ends), FIRSTKEY.rel is
# made once; w.ANCHOR names the connection's watcher. So a lock costs the host one flock per key
# and the holder's fork: no rm, no watcher of its own, a mkfifo once per key.
#
# In a remote shell whose perl serves (remote-shell.sh, perl-ask.sh), that perl takes the flocks
# and holds them itself, and is the holder that KEY.since names: no process starts (the flock
# program, a holder's fork and the mkfifo of a new key cost a host more than the rest of a tap's
# lock). It makes FIRSTKEY.rel where it can, reads it for the same token, and watches the
# connection's sshd itself, so it needs no watcher.
#
# Exits 124 outside a remote shell (no anchor: the client holds the lock the other way, lock.ts),
# 125 with "host lock: ..." on stderr when the lock was not taken. A host that cannot lock (no
# writable /run; no flock, where perl does not serve) runs the command unlocked, as before there
# was a lock.
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
. ./perl-ask.sh
. ./lock-keys.sh
. ./run-wrapped.sh
if ! [ -d "$dir" ] && ! mkdir -p "$dir" 2>/dev/null; then
  exec "$@"
fi
# Lock and state files name the resources being worked on: root alone reads them.
umask 077
first=${keys# }
rel="$dir/${first%% *}.rel"
# The release fifo, made once per key (another operation may be making it at the same moment).
make_rel() {
  if ! [ -p "$rel" ] && ! mkfifo "$rel" 2>/dev/null && ! [ -p "$rel" ]; then
    echo "host lock: cannot create $rel" >&2
    exit 125
  fi
}
nl='
'
# Perl makes the fifo itself where it can; where it cannot it answers "fifo", having taken
# nothing, and is asked again once the fifo is there.
# shellcheck disable=SC2086 # the keys are plain names, one word each (lock.ts checks them)
if perl_ask '!lock' "$token" "$wait" $keys &&
  { [ "$_pa_all" != "${nl}fifo$nl" ] || { make_rel && perl_ask '!lock' "$token" "$wait" $keys; }; }; then
  case $_pa_all in
    "${nl}ok$nl") ;;
    "${nl}no "*"$nl")
      why=${_pa_all#"${nl}no "}
      echo "host lock: ${why%"$nl"}" >&2
      exit 125
      ;;
    *)
      echo "host lock: the remote shell's perl answered neither ok nor no" >&2
      exit 125
      ;;
  esac
  run_wrapped "$@"
fi
# Where perl does not serve or did not answer (it was gone, and what it held went with it), a
# holder process, on a host with the flock program: an flock belongs to the open file, so the
# holder started below, which inherits the descriptors, keeps the locks after this process
# closes its copies.
command -v flock >/dev/null 2>&1 || exec "$@"
make_rel
# shellcheck disable=SC2086
if ! take_lock_keys "$dir" "$wait" $keys; then
  echo "host lock: $lock_why" >&2
  exit 125
fi
# Open for reading and writing (which never blocks) before the holder starts and kept open by it,
# so a release written at any time waits in the fifo for the holder to read it.
exec 9<>"$rel"
# The holder reads tokens from the fifo until its own comes (a late release of an earlier
# operation on the same key is skipped): no process runs while it holds.
(
  # shellcheck disable=SC2086
  trap 'lock_gone "$dir" $keys' EXIT
  trap 'exit 1' HUP INT TERM PIPE
  while IFS= read -r t <&9; do
    [ "$t" = "$token" ] && break
  done
) </dev/null >/dev/null 2>&1 &
# shellcheck disable=SC2086
lock_since "$dir" "$token" "$!" "$anchor" $keys
# One watcher per connection, named by w.ANCHOR and started by the first lock taken through it
# (or again if it is gone): once the connection's sshd is gone it releases every holder whose
# .since names that connection, so no lock outlives it. Started after this holder's .since, so
# it finds this one too. Two shells starting it at once only make a second watcher. It is
# detached (its parent exits at once) and ignores SIGHUP, so it is not in the process tree of
# the command that started it when the shell kills that, and it keeps no lock descriptor.
w="$dir/w.$anchor"
wpid=''
{ read -r wpid <"$w"; } 2>/dev/null
case $wpid in '' | *[!0-9]*) wpid=0 ;; esac
if [ "$wpid" = 0 ] || ! kill -0 "$wpid" 2>/dev/null; then
  (
    trap '' HUP
    (
      while kill -0 "$anchor" 2>/dev/null; do sleep 1; done
      lock_release_connection "$dir" "$anchor"
      rm -f "$w"
    ) </dev/null >/dev/null 2>&1 3>&- 4>&- 5>&- 6>&- 7>&- 8>&- 9>&- &
    printf '%s\n' "$!" >"$w"
  )
fi
exec 3>&- 4>&- 5>&- 6>&- 7>&- 8>&- 9>&-
run_wrapped "$@"
