# shellcheck shell=sh
# A library: `same_ns FILE FILE` succeeds when two namespace files (/proc/PID/ns/*) name the same
# namespace. The shell's `test -ef` (dash, bash, busybox ash) compares their device and inode with
# no process; a shell without it compares what readlink prints (`mnt:[INODE]`), two processes. A
# file that cannot be read (the process is gone) is never the same.
same_ns() {
  if [ -z "${_same_ns_ef-}" ]; then
    # shellcheck disable=SC3013 # -ef is checked here before it is relied on
    if [ / -ef / ] 2>/dev/null; then _same_ns_ef=1; else _same_ns_ef=0; fi
  fi
  if [ "$_same_ns_ef" = 1 ]; then
    # shellcheck disable=SC3013 # this shell has it (checked above)
    [ "$1" -ef "$2" ]
    return
  fi
  _same_ns_a=$(readlink -- "$1" 2>/dev/null) || return 1
  [ -n "$_same_ns_a" ] && [ "$_same_ns_a" = "$(readlink -- "$2" 2>/dev/null)" ]
}
