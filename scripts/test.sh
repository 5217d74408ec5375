#!/usr/bin/env bash
# The whole test suite: set up what is missing, typecheck, lint, then every test tier.
# With CI=true a missing swtpm / tpm2-tools / SoftHSM2 fails the run instead of skipping.
# Everything runs on the pinned Node (scripts/node-env.sh), vitest and what the tests spawn too.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
. scripts/node-env.sh
echo "== typecheck"
"$NODE" node_modules/typescript/bin/tsc -p tsconfig.test.json --noEmit
echo "== lint"
"$NODE" node_modules/@biomejs/biome/bin/biome check --reporter=summary .
# No import cycle between components, the core never imports the front end (docs/architecture.md).
"$NODE" dist/scripts/check-imports.js
echo "== tests"
report=$(mktemp)
trap 'rm -f "$report"' EXIT
status=0
"$NODE" node_modules/vitest/vitest.mjs run --reporter=default --reporter=json --outputFile.json="$report" "$@" || status=$?
"$NODE" -e '
  const r = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
  const skipped = r.numPendingTests + r.numTodoTests;
  console.log(`${r.numPassedTests} passed, ${r.numFailedTests} failed, ${skipped} skipped`);
' "$report" || true
exit $status
