#!/usr/bin/env bash
# `npm run bench [-- --hosts 3 --resources 20 --latency 20 ...]`: installs what the lab needs,
# builds (the plugin loads the built provider), and runs bench/fleet.ts; `npm run bench:booted
# [-- --repeat 3]` runs bench/booted.ts instead (one booted lab host), `npm run bench:first-apply`
# bench/first-apply.ts (a plugin's first time against the same calls warm). Needs root (lab hosts
# are network namespaces, booted ones containers). See docs/performance.md.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -d node_modules ] || npm ci --no-audit --no-fund
bash scripts/install-deps.sh
npm run build >/dev/null
if [ "${1-}" = --booted ]; then
  shift
  exec npx tsx bench/booted.ts "$@"
fi
if [ "${1-}" = --first-apply ]; then
  shift
  exec npx tsx bench/first-apply.ts "$@"
fi
exec npx tsx bench/fleet.ts "$@"
