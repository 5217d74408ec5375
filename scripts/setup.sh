#!/usr/bin/env bash
# Idempotent set-up for a Debian 12 machine with Node 20: the system packages (apt, when run as
# root), the npm packages from the lockfile, and the build into dist/. Safe to run any number of
# times; does only what is missing. Used by scripts/dev.sh and scripts/test.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

# systemd: systemd-analyze and systemd-socket-activate for the unit tests (not run as PID 1);
# strace: the test that checks the unit's syscall filter against what the daemon really calls.
# python3, make, g++: node-gyp, which builds native/ and pkcs11js (absent from slim images).
# dpkg-dev (dpkg-shlibdeps), binutils (strip), lintian: scripts/package.sh and its test.
APT_PACKAGES=(swtpm swtpm-tools tpm2-tools libtss2-tcti-swtpm0 softhsm2 opensc openssl systemd strace python3 make g++
  dpkg-dev binutils lintian)

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
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

node_major=$(node -p 'process.versions.node.split(".")[0]')
if [ "$node_major" -lt 20 ]; then
  echo "setup: Node >= 20 is required (found $(node --version))" >&2
  exit 2
fi

# Native npm packages build against this Node's own headers, never downloaded ones.
npm_config_nodedir="$(dirname "$(dirname "$(node -p 'process.execPath')")")"
export npm_config_nodedir

# npm packages exactly as the lockfile says; reinstalled only when the lockfile changed.
lock_hash=$(sha256sum package-lock.json | cut -d' ' -f1)
if [ ! -f node_modules/.execgate-lock ] || [ "$(cat node_modules/.execgate-lock)" != "$lock_hash" ]; then
  echo "setup: npm ci"
  npm ci --no-audit --no-fund --loglevel=error
  echo "$lock_hash" > node_modules/.execgate-lock
fi

# The N-API addon (peer credentials, sd_notify), rebuilt when missing or older than its sources.
addon=native/build/Release/execgate_native.node
if [ ! -f "$addon" ] || [ -n "$(find native/src native/binding.gyp -newer "$addon" 2>/dev/null)" ]; then
  echo "setup: building native/"
  bash native/build.sh
fi

npx tsc -p tsconfig.json
