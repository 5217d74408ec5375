# shellcheck shell=bash
# What an installed execgate is and where each part goes: the one list that scripts/install.sh
# (a checkout onto this host) and scripts/package.sh (the Debian package) both install from.
# Sourced from the repository root; defines paths and functions, runs nothing.
#
#   /usr/lib/execgate/                 the application (layout_app): dist/ (JavaScript of daemon/
#                                      and src/, declarations of src/ for the client module), the
#                                      native addon, production node_modules, package.json,
#                                      docs/, examples/
#   /usr/bin/execgate                  launcher running the CLI on a given Node (layout_launcher)
#   /usr/lib/systemd/system/           execgate.service, execgate.socket      (layout_system)
#   /usr/lib/sysusers.d/execgate.conf, /usr/lib/tmpfiles.d/execgate.conf     (layout_system)
#   /etc/execgate/                     execgate.toml, policy.toml from examples/: the operator's
#                                      files (install.sh never overwrites them; conffiles in the
#                                      package). credentials/hsm-pin comes from tmpfiles.d.

EXECGATE_LIB=/usr/lib/execgate
EXECGATE_BIN=/usr/bin/execgate
EXECGATE_UNITDIR=/usr/lib/systemd/system
EXECGATE_SYSUSERS=/usr/lib/sysusers.d/execgate.conf
EXECGATE_TMPFILES=/usr/lib/tmpfiles.d/execgate.conf
EXECGATE_ETC=/etc/execgate
EXECGATE_CONFIG_FILES=(execgate.toml policy.toml)
EXECGATE_ADDON=native/build/Release/execgate_native.node

layout_fail() { echo "${LAYOUT_WHO:-layout}: $1" >&2; exit "${2:-2}"; }

# Everything layout_app copies must be built: dist/, the addon, node_modules.
layout_check_built() {
  [ -f dist/daemon/cli.js ] || layout_fail "dist/ is not built: run scripts/setup.sh first" 3
  [ -f "$EXECGATE_ADDON" ] || layout_fail "$EXECGATE_ADDON is not built: run scripts/setup.sh first" 3
  [ -d node_modules ] || layout_fail "node_modules is missing: run scripts/setup.sh first" 3
}

# layout_app DIR: the application tree into DIR, a fresh directory that becomes $EXECGATE_LIB.
layout_app() {
  local app="$1" f deps dep rel
  install -d -m 0755 "$app" "$app/dist" "$app/native/build/Release" "$app/node_modules" "$app/docs" "$app/examples"
  # Compiled JavaScript only (no tests, benchmarks or source maps); declarations of src/ so a
  # project that installs the client module (npm install /usr/lib/execgate) gets its types.
  (cd dist && find daemon src -type f -name '*.js' -print0 && find src -type f -name '*.d.ts' -print0) |
    while IFS= read -r -d '' f; do
      install -D -m 0644 "dist/$f" "$app/dist/$f"
    done
  install -m 0644 "$EXECGATE_ADDON" "$app/native/build/Release/execgate_native.node"
  install -m 0644 docs/*.md "$app/docs/"
  install -m 0644 "${EXECGATE_CONFIG_FILES[@]/#/examples/}" "$app/examples/"
  # package.json without what only a checkout uses (scripts, devDependencies): npm reads it when
  # an executor's project installs the client module.
  node -e '
    const p = JSON.parse(require("fs").readFileSync("package.json", "utf8"));
    delete p.scripts; delete p.devDependencies;
    process.stdout.write(JSON.stringify(p, null, 2) + "\n");' > "$app/package.json"
  # Production dependencies as the lockfile resolved them (npm ls reads node_modules; no network).
  deps=$(npm ls --omit=dev --all --parseable 2>/dev/null || true)
  [ -n "$deps" ] || layout_fail "npm ls found no production dependencies (is node_modules complete?)" 3
  while IFS= read -r dep; do
    rel="${dep#"$PWD"/node_modules/}"
    [ "$rel" != "$dep" ] || layout_fail "unexpected dependency path $dep"
    install -d -m 0755 "$app/node_modules/$(dirname "$rel")"
    cp -a "$dep" "$app/node_modules/$rel"
  done < <(printf '%s\n' "$deps" | tail -n +2)
  find "$app/node_modules" -depth -type d -name obj.target -exec rm -rf {} +
  # Nothing here is executed directly (node runs the JavaScript, addons are loaded): no exec bits.
  find "$app" -type d -exec chmod 0755 {} +
  find "$app" -type f -exec chmod 0644 {} +
}

# layout_launcher NODE WRITER: the /usr/bin/execgate script, running the CLI on NODE.
layout_launcher() {
  printf '#!/bin/sh\n# execgate launcher, written by %s\nexec %s %s/dist/daemon/cli.js "$@"\n' "$2" "$1" "$EXECGATE_LIB"
}

# layout_system ROOT: the systemd units and the sysusers.d / tmpfiles.d entries under ROOT.
layout_system() {
  install -D -m 0644 systemd/execgate.service "$1$EXECGATE_UNITDIR/execgate.service"
  install -D -m 0644 systemd/execgate.socket "$1$EXECGATE_UNITDIR/execgate.socket"
  install -D -m 0644 systemd/sysusers.conf "$1$EXECGATE_SYSUSERS"
  install -D -m 0644 systemd/tmpfiles.conf "$1$EXECGATE_TMPFILES"
}
