# shellcheck shell=sh
# A library of the lock scripts (lock-take.sh, lock-check.sh): `run_wrapped CMD...` ends the
# script by running the command it wraps. `exec CMD...` in general; in a remote shell, a kept
# script that may run in this process comes as `. HASH ARGS...` (host/script.ts) and is sourced
# from the shell's cache instead, so it starts no shell of its own.
run_wrapped() {
  if [ "${1-}" = . ]; then
    case ${2-} in
      '' | *[!0-9a-f]*)
        echo "run_wrapped: not a kept script: ${2-}" >&2
        exit 2
        ;;
    esac
    _rw_hash=$2
    shift 2
    # shellcheck disable=SC1090 # a body the shell keeps, named by its hash
    . "$PULUMI_HYPERVISOR_SCRIPTS/$_rw_hash"
    exit
  fi
  exec "$@"
}
