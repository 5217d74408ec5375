#!/usr/bin/env bash
# Prints the package's debian/copyright (machine-readable format 1.0): execgate under Apache-2.0,
# then each production dependency and the Node runtime with the license text they ship.
# Usage (from the repository root, node_modules installed): copyright.sh NODE_BINARY
set -euo pipefail

# A license text as a DEP-5 continuation: indented, blank lines as " .".
continuation() { sed -e 's/[[:space:]]*$//' -e 's/^$/./' -e 's/^/ /' "$1"; }

# The Copyright: field from a license file's own notices, else the package's author.
holders() {
  local notices
  notices=$(grep -i -m 5 -E '^[[:space:]]*(\(c\)|copyright[[:space:]]*(\(c\)|[0-9©]))' "$1" | sed -e 's/^[[:space:]]*//' || true)
  if [ -n "$notices" ]; then printf '%s\n' "$notices" | sed '2,$s/^/ /'; else echo "the authors of $2"; fi
}

cat <<'HEAD'
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: execgate
Comment: Built by scripts/package.sh. Each production dependency under
 /usr/lib/execgate/node_modules is listed with the license text it ships.

Files: *
Copyright: the execgate authors
License: Apache-2.0
 Licensed under the Apache License, Version 2.0 (the "License"); you may not
 use this software except in compliance with the License.
 .
 On Debian systems, the complete text of the Apache License, Version 2.0 can
 be found in "/usr/share/common-licenses/Apache-2.0".
HEAD

npm ls --omit=dev --all --parseable | tail -n +2 | while IFS= read -r dir; do
  rel="${dir#"$PWD"/node_modules/}"
  meta=$(node -p 'const p = require(process.argv[1]); `${p.license ?? "UNKNOWN"} ${p.version}`' "$dir/package.json")
  license_file=$(find "$dir" -maxdepth 1 -type f -iname 'licen[cs]e*' | sort | head -n 1)
  [ -n "$license_file" ] || { echo "copyright: $rel ships no license file" >&2; exit 3; }
  echo
  echo "Files: usr/lib/execgate/node_modules/$rel/*"
  echo "Copyright: $(holders "$license_file" "$rel")"
  echo "Comment: $rel ${meta#* } from the npm registry, as package-lock.json pins it."
  echo "License: ${meta%% *}"
  continuation "$license_file"
done

# Node's LICENSE lists every component it bundles (OpenSSL, libuv, V8, ...).
node_license=""
for f in "$(dirname "$1")/../LICENSE" /usr/share/doc/nodejs/LICENSE /usr/share/doc/nodejs/copyright; do
  if [ -f "$f" ]; then node_license="$f"; break; fi
done
[ -n "$node_license" ] || { echo "copyright: no LICENSE found for the Node at $1" >&2; exit 3; }
echo
echo "Files: usr/lib/execgate/node/*"
echo "Copyright: Node.js contributors and the authors of its bundled components"
echo "Comment: the Node.js runtime, $("$1" --version); its license covers the components it bundles."
echo "License: MIT and others"
continuation "$node_license"
