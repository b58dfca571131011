#!/usr/bin/env bash
# `npm run bench [-- --hosts 3 --resources 20 --latency 20 ...]`: installs what the lab needs,
# builds (the plugin loads the built provider), and runs bench/fleet.ts. Needs root (lab hosts
# are network namespaces). See docs/performance.md.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -d node_modules ] || npm ci --no-audit --no-fund
bash scripts/install-deps.sh
npm run build >/dev/null
exec npx tsx bench/fleet.ts "$@"
