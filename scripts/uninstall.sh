#!/usr/bin/env bash
# Removes what scripts/install.sh installed: the application under /usr/lib/execgate, the
# /usr/bin/execgate wrapper, the units, the sysusers.d and tmpfiles.d entries and /etc/execgate
# (configuration, policy, credentials). The lineage state under /var/lib/execgate is kept — it
# is the audit record; export it (execgate audit export) before deleting it by hand. The
# execgate user and groups stay too: they still own that state.
#
# Usage: scripts/uninstall.sh [--destdir DIR] [--keep-config]
#   With no DESTDIR on a machine run by systemd, the service and socket are stopped and
#   disabled first.
set -euo pipefail

DESTDIR="${DESTDIR:-}"
KEEP_CONFIG=0
while [ $# -gt 0 ]; do
  case "$1" in
    --destdir) DESTDIR="$2"; shift 2 ;;
    --keep-config) KEEP_CONFIG=1; shift ;;
    -h|--help) awk 'NR == 1 { next } /^#/ { sub(/^# ?/, ""); print; next } { exit }' "$0"; exit 0 ;;
    *) echo "uninstall: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
DESTDIR="${DESTDIR%/}"

if [ -z "$DESTDIR" ] && [ -d /run/systemd/system ] && command -v systemctl >/dev/null; then
  systemctl disable --now execgate.socket execgate.service 2>/dev/null || true
fi

rm -rf "$DESTDIR/usr/lib/execgate" "$DESTDIR/usr/lib/execgate.new" "$DESTDIR/usr/lib/execgate.old"
# The wrapper only if it is ours (a distribution's /usr/bin/execgate is not ours to remove).
if [ -f "$DESTDIR/usr/bin/execgate" ] && grep -q "written by scripts/install.sh" "$DESTDIR/usr/bin/execgate"; then
  rm -f "$DESTDIR/usr/bin/execgate"
fi
rm -f "$DESTDIR/usr/lib/systemd/system/execgate.service" "$DESTDIR/usr/lib/systemd/system/execgate.socket"
rm -f "$DESTDIR/usr/lib/sysusers.d/execgate.conf" "$DESTDIR/usr/lib/tmpfiles.d/execgate.conf"
if [ "$KEEP_CONFIG" = 0 ]; then rm -rf "$DESTDIR/etc/execgate"; fi
# /run/execgate (tmpfiles.d, on tmpfs) is gone at the next boot; the socket unit removes its socket.

if [ -z "$DESTDIR" ] && [ -d /run/systemd/system ] && command -v systemctl >/dev/null; then
  systemctl daemon-reload || true
fi
echo "uninstall: removed execgate from ${DESTDIR:-/}; kept ${DESTDIR}/var/lib/execgate (lineage state)"
