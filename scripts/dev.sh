#!/usr/bin/env bash
# The main job on its embedded default: set up what is missing, then `execgate dev up`
# (a swtpm and a SoftHSM2 token, whether or not the host has a TPM; state kept in
# .execgate-dev/ so a second run resumes).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
. scripts/node-env.sh
exec "$NODE" dist/daemon/cli.js dev up "$@"
