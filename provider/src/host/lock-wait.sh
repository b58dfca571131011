#!/bin/sh
# Runs a command once the host lock of its operation is held: `lock-wait.sh TOKEN WAIT CMD...`
# waits (at most WAIT seconds, plus a little for the holder to start) until lock-hold.sh with the
# same TOKEN holds its keys, then execs CMD. Exit 125 when the lock was not taken.
dir=/run/pulumi-hypervisor/locks
token=$1 wait=$2
shift 2
st="$dir/op.$token"
limit=$(((wait + 30) * 100))
i=0
while :; do
  if [ -e "$st.held" ]; then exec "$@"; fi
  if [ -e "$st.none" ]; then
    rm -f "$st.none"
    exec "$@"
  fi
  if [ -e "$st.failed" ]; then
    cat "$st.failed" >&2
    rm -f "$st.failed"
    exit 125
  fi
  if ! [ -d "$dir" ] && ! mkdir -p "$dir" 2>/dev/null; then exec "$@"; fi
  i=$((i + 1))
  if [ "$i" -gt "$limit" ]; then
    echo "timed out waiting for the host lock holder (op.$token) to start" >&2
    exit 125
  fi
  sleep 0.01
done
