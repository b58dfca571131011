#!/usr/bin/env bash
# `npm run lab [-- up|down|status]`: installs what the lab needs, builds, and runs scripts/lab.ts.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -d node_modules ] || npm ci --no-audit --no-fund
bash scripts/install-deps.sh
npm run build >/dev/null
exec npx tsx scripts/lab.ts "$@"
