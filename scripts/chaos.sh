#!/usr/bin/env bash
# kill -9 of the daemon under load, N cycles against a swtpm, then audit export + audit verify:
# exit 0 only if every acknowledged token and redeem is in the log and the export verifies
# (scripts/chaos/chaos.ts; --help for the options). --no-setup: use the current build as is.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = --no-setup ]; then shift; else ./scripts/setup.sh >&2; fi
exec node dist/scripts/chaos/run.js "$@"
