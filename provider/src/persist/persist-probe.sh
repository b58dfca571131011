# shellcheck shell=sh
# A library for probes: `persist_probe UNIT FILE...` prints what the provider persisted for one
# object: whether PID 1 is systemd, the unit's enablement and state, and a sha256 of each file
# (or `absent`). Parsed by parsePersistProbe (persistence.ts). Needs probe.sh's `section` and
# unit-state.sh, whose ask_units a probe that reads other units too calls before this.
# shellcheck disable=SC2154 # us_active is unit_state's (unit-state.sh)
persist_probe() {
  pp_unit=$1
  shift
  section systemd
  # sd_booted(3): systemd is PID 1 exactly when this directory exists.
  if [ -d /run/systemd/system ]; then echo yes; else echo no; fi
  section unit "$pp_unit"
  if [ -d /run/systemd/system ]; then
    printf 'enabled %s\n' "$(unit_enabled "$pp_unit")"
    unit_state "$pp_unit"
    printf 'active %s\n' "$us_active"
  fi
  # one sha256sum for every file there (a process costs the host about 1 ms of CPU); a file whose
  # `HASH  PATH` line does not come back as it was asked for is hashed on its own
  pp_sums=''
  for pp_f in "$@"; do [ ! -f "$pp_f" ] || { pp_sums=$(pp_present "$@"); break; }; done
  for pp_file in "$@"; do
    section file "$pp_file"
    if [ ! -f "$pp_file" ]; then
      echo absent
      continue
    fi
    pp_hash='' pp_ifs=$IFS
    set -f
    IFS='
'
    for pp_l in $pp_sums; do [ "${pp_l#*  }" != "$pp_file" ] || pp_hash=${pp_l%%  *}; done
    IFS=$pp_ifs
    set +f
    case $pp_hash in
      *[!0-9a-f]* | '') sha256sum <"$pp_file" | cut -d ' ' -f 1 ;;
      *) echo "$pp_hash" ;;
    esac
  done
}
pp_present() {
  for pp_f in "$@"; do
    shift
    [ ! -f "$pp_f" ] || set -- "$@" "$pp_f"
  done
  [ "$#" -eq 0 ] || sha256sum -- "$@" 2>/dev/null
}
