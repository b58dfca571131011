#!/usr/bin/env bash
# Runs shellcheck (Debian package shellcheck) on every shell script in the repository: the
# scripts the provider runs on hosts (provider/src/**/*.sh) and the repository's own tooling.
# `-x -P SCRIPTDIR` follows a script's `. ./lib.sh` includes relative to the script itself.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v shellcheck >/dev/null 2>&1; then
  echo "lint-shell: shellcheck is not installed (Debian package shellcheck; scripts/install-deps.sh installs it)" >&2
  exit 1
fi
mapfile -t files < <(find . \( -path ./node_modules -o -path ./dist -o -path ./.lab -o -path ./.git \) -prune \
  -o -type f -name '*.sh' -print | sort)
shellcheck -x -P SCRIPTDIR "${files[@]}"
echo "lint-shell: ${#files[@]} scripts pass shellcheck"
