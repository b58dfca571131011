#!/usr/bin/env bash
# `npm test`: installs what the tests need (Debian packages when root on Debian), builds, type
# checks, lints, and runs every vitest project: unit (pure, no root), lab (the lab hosts themselves),
# integration (the provider on namespace lab hosts), package (the packed tarball, import code) and
# booted (booted Debian hosts that reboot). One project alone: `npx vitest run --project unit`.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -d node_modules ] || npm ci --no-audit --no-fund
bash scripts/install-deps.sh
npm run build
npm run typecheck
npm run lint
npx vitest run "$@"
