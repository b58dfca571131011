#!/bin/sh
# Runs a later command of an operation whose host lock lock-take.sh took, once it is sure the lock
# is still held: `lock-check.sh TOKEN/FIRSTKEY CMD...`. The holder writes FIRSTKEY.since (its
# token and pid first) and empties it when it ends, which it does with the connection it was taken
# on; a command that finds another token there, or the holder's pid gone (killed), fails
# (exit 125) instead of running unlocked. The holder is a process of its own or the perl of the
# remote shell that took the lock (lock-take.sh), the same to this check. A host that cannot lock
# (no lock directory; no flock, where perl does not serve) runs it as lock-take.sh did the first.
d=/run/pulumi-hypervisor/locks
ref=$1
shift
. ./lock-keys.sh
if [ -d "$d" ] && { [ -n "${PULUMI_HYPERVISOR_PERL-}" ] || command -v flock >/dev/null 2>&1; }; then
  t='' p=''
  if lock_ref_ok "$ref"; then { read -r t p _ <"$d/${ref#*/}.since"; } 2>/dev/null; fi
  if [ -z "$t" ] || [ "$t" != "${ref%%/*}" ] || ! kill -0 "$p" 2>/dev/null; then
    echo "host lock: lost before this command (the connection that took it closed, or its holder was killed)" >&2
    exit 125
  fi
fi
. ./run-wrapped.sh
run_wrapped "$@"
