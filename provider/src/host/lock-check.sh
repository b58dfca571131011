#!/bin/sh
# Runs a later command of an operation whose host lock lock-take.sh took, once it is sure the lock
# is still held: `lock-check.sh TOKEN CMD...`. The holder ends with the connection it was taken on;
# a command that finds it gone fails (exit 125) instead of running unlocked. A host that cannot
# lock (no lock directory, no flock) runs it as lock-take.sh did the first.
d=/run/pulumi-hypervisor/locks
if [ -d "$d" ] && command -v flock >/dev/null 2>&1 && ! [ -p "$d/op.$1.rel" ]; then
  echo "host lock: lost before this command (the connection that took it closed, or its holder was killed)" >&2
  exit 125
fi
shift
. ./run-wrapped.sh
run_wrapped "$@"
