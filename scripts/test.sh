#!/usr/bin/env bash
# The whole test suite: set up what is missing, typecheck, lint, then every test tier.
# With CI=true a missing swtpm / tpm2-tools / SoftHSM2 fails the run instead of skipping.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
echo "== typecheck"
npx tsc -p tsconfig.test.json --noEmit
echo "== lint"
npx biome check --reporter=summary .
echo "== tests"
report=$(mktemp)
trap 'rm -f "$report"' EXIT
status=0
npx vitest run --reporter=default --reporter=json --outputFile.json="$report" "$@" || status=$?
node -e '
  const r = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
  const skipped = r.numPendingTests + r.numTodoTests;
  console.log(`${r.numPassedTests} passed, ${r.numFailedTests} failed, ${skipped} skipped`);
' "$report" || true
exit $status
