#!/usr/bin/env bash
# `npm run lab [-- up|down|status|reboot HOST]`: installs what the lab needs, builds, and runs
# scripts/lab.ts (the main job on booted Debian hosts; see lab/booted/README.md).
set -euo pipefail
cd "$(dirname "$0")/.."
[ -d node_modules ] || npm ci --no-audit --no-fund
bash scripts/install-deps.sh
npm run build >/dev/null
exec npx tsx scripts/lab.ts "$@"
