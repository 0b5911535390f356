#!/usr/bin/env bash
# Checks the Debian package: its control fields (dpkg-deb -I), that it holds what a gateway
# needs (dpkg-deb -c: the binary, the unit and its drop-in, the udev rules, the example
# configuration, the docs and wiring guides), and lintian, failing on any lintian error
# (warnings and the rest are listed). Builds the package with scripts/package.sh unless one
# is given.
#
# usage: scripts/check-package.sh [DEB]
set -euo pipefail
cd "$(dirname "$0")/.."

if [ $# -gt 0 ]; then
  deb="$1"
else
  deb="$(scripts/package.sh | tail -n 1)"
fi
if [ ! -f "$deb" ]; then
  echo "error: $deb is not a file" >&2
  exit 1
fi
echo "Checking $deb"
failed=0

info="$(dpkg-deb -I "$deb")"
for field in "Package: zello-gateway" "Maintainer: " "Section: hamradio" "Depends: .*libopus0" "Depends: .*libasound2"; do
  if ! printf '%s\n' "$info" | grep -q "^ *$field"; then
    echo "error: the control file has no '$field'" >&2
    failed=1
  fi
done
for script in postinst postrm; do
  if ! printf '%s\n' "$info" | grep -Eq "^ .* $script( |$)"; then
    echo "error: the package has no $script" >&2
    failed=1
  fi
done

contents="$(dpkg-deb -c "$deb" | awk '{ print $6 }')"
# The unit may sit in /lib or /usr/lib, depending on cargo-deb's version (the same folder
# on a merged-/usr system): either is accepted, the drop-in must sit beside it.
unit="$(printf '%s\n' "$contents" | grep -E '^\./(usr/)?lib/systemd/system/zello-gateway\.service$' || true)"
if [ -z "$unit" ]; then
  echo "error: the package has no zello-gateway.service" >&2
  failed=1
fi
for path in \
  ./usr/bin/zello-gateway \
  "${unit:-./lib/systemd/system/zello-gateway.service}.d/deb-usr-bin.conf" \
  ./lib/udev/rules.d/99-zello-gateway.rules \
  ./usr/share/zello-gateway/gateway.example.toml \
  ./usr/share/zello-gateway/admin.example.toml \
  ./usr/share/doc/zello-gateway/README.md \
  ./usr/share/doc/zello-gateway/copyright; do
  if ! printf '%s\n' "$contents" | grep -qxF "$path"; then
    echo "error: the package has no $path" >&2
    failed=1
  fi
done
guides="$(printf '%s\n' "$contents" | grep -c '^\./usr/share/doc/zello-gateway/hw/.*\.md$' || true)"
if [ "$guides" -lt 4 ]; then
  echo "error: the package has $guides wiring guides under /usr/share/doc/zello-gateway/hw/" >&2
  failed=1
fi
# The binary runs.
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
dpkg-deb -x "$deb" "$work"
if ! "$work/usr/bin/zello-gateway" --version >/dev/null; then
  echo "error: the packaged binary does not run" >&2
  failed=1
fi

# lintian: errors fail the check; every other tag is listed.
status=0
lintian_out="$(lintian --fail-on error --display-info "$deb" 2>&1)" || status=$?
if [ -n "$lintian_out" ]; then
  printf '%s\n' "$lintian_out"
fi
if [ "$status" -ne 0 ]; then
  echo "error: lintian found errors (exit status $status)" >&2
  failed=1
fi

if [ "$failed" -ne 0 ]; then
  exit 1
fi
echo "package: control fields, contents and lintian clean of errors ($(printf '%s\n' "$lintian_out" | grep -c '^[WIP]:' || true) other tags listed)"
