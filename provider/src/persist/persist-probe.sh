# shellcheck shell=sh
# A library for probes: `persist_probe UNIT FILE...` prints what the provider persisted for one
# object: whether PID 1 is systemd, the unit's enablement and state, and a sha256 of each file
# (or `absent`). Parsed by parsePersistProbe (persistence.ts). Needs probe.sh's `section`.
persist_probe() {
  pp_unit=$1
  shift
  section systemd
  # sd_booted(3): systemd is PID 1 exactly when this directory exists.
  if [ -d /run/systemd/system ]; then echo yes; else echo no; fi
  section unit "$pp_unit"
  if [ -d /run/systemd/system ]; then
    printf 'enabled %s\n' "$(systemctl is-enabled -- "$pp_unit" 2>/dev/null || true)"
    printf 'active %s\n' "$(systemctl is-active -- "$pp_unit" 2>/dev/null || true)"
  fi
  for pp_file in "$@"; do
    section file "$pp_file"
    if [ -f "$pp_file" ]; then
      sha256sum <"$pp_file" | cut -d ' ' -f 1
    else
      echo absent
    fi
  done
}
