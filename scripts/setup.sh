#!/usr/bin/env bash
# Everything Nightlab needs on a fresh machine, idempotent and quick once done:
# node packages from the lockfile, the Temporal CLI (PATH, cache, Go build or download),
# and the example target's Python packages.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund
fi
node bin/nightlab.mjs setup
