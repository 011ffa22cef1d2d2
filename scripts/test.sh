#!/usr/bin/env bash
# The tests: set up, type-check, lint (the layering, the format), then every test file against one
# real Temporal dev server.
# Arguments select test files (e.g. scripts/test.sh test/campaign.test.ts).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
npx tsc --noEmit
npx eslint .
npx prettier --check . >/dev/null || { echo "prettier: files not formatted (npm run format)"; npx prettier --list-different .; exit 1; }
exec node bin/run-tests.mjs "$@"
