#!/usr/bin/env bash
# The main job: set up, then the tiny-lm demo campaign (local dev server, CPU, offline proposer
# unless ANTHROPIC_API_KEY is set). Arguments go to `nightlab demo` (e.g. --iterations 12).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec node bin/nightlab.mjs demo "$@"
