# shellcheck shell=sh
# A library for probes: `procs_named NAME PROC` sets `procs` to the directories below PROC (where
# proc is mounted, /proc) of every process whose name (comm) is NAME, space-separated. In a remote
# shell the loop's perl reads them (perl-ask.sh), so no process starts; else one grep reads every
# process's comm: the shell's `read` takes a system call per byte, which with 1,000 processes on
# the host cost the NatRule probe's sshd part 26-27 ms against 14-17. A host without grep gets the
# shell's reads. /proc paths have no spaces: a word each.
. ./perl-ask.sh
procs_named() {
  procs=
  if perl_ask '!procs' "$1" "$2"; then
    for _pn in $_pa_all; do procs="$procs $_pn"; done
    return 0
  fi
  if command -v grep >/dev/null 2>&1; then
    # shellcheck disable=SC2013 # grep -l prints paths, not lines to read
    for _pn in $(grep -lxF -- "$1" "$2"/[0-9]*/comm 2>/dev/null); do
      procs="$procs ${_pn%/comm}"
    done
    return 0
  fi
  for _pn in "$2"/[0-9]*; do
    { IFS= read -r _pn_name <"$_pn/comm"; } 2>/dev/null || continue
    if [ "$_pn_name" = "$1" ]; then procs="$procs $_pn"; fi
  done
}
