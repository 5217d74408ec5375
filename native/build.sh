#!/usr/bin/env bash
# Builds native/build/Release/execgate_native.node offline with npm's bundled node-gyp,
# against the headers of the Node that runs it (<prefix>/include/node), never downloading.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
prefix="$(dirname "$(dirname "$(node -p 'process.execPath')")")"
if [ ! -f "$prefix/include/node/node_api.h" ]; then
  echo "native/build.sh: no Node headers at $prefix/include/node (install the nodejs headers)" >&2
  exit 2
fi
gyp="$(npm root -g 2>/dev/null)/npm/node_modules/node-gyp/bin/node-gyp.js"
if [ ! -f "$gyp" ]; then
  echo "native/build.sh: npm's bundled node-gyp not found at $gyp" >&2
  exit 2
fi
exec node "$gyp" rebuild --directory "$here" --nodedir="$prefix" --loglevel=warn
