#!/usr/bin/env bash
# Checks systemd/zello-gateway.service with `systemd-analyze verify`, failing on any warning
# (systemd-analyze itself exits 0 on unknown keys and bad values), and its sandbox with
# `systemd-analyze security --offline=true`, failing when the overall exposure is above
# MAX_EXPOSURE (3.5; 0 is the safest, 10 the most exposed).
#
# verify checks that every Exec command exists, and the unit names the installed binary
# (/usr/local/bin/zello-gateway). So a copy of the unit with that path replaced by the built
# binary is verified; nothing is installed, and systemd need not be running (this works in a
# container). systemd-analyze comes with the systemd package, installed through apt if missing.
#
# usage: scripts/verify-unit.sh [BINARY [UNIT]]
#   BINARY  default target/debug/zello-gateway, built if absent
#   UNIT    default systemd/zello-gateway.service
set -euo pipefail
cd "$(dirname "$0")/.."

installed=/usr/local/bin/zello-gateway
binary="${1:-target/debug/zello-gateway}"
unit="${2:-systemd/zello-gateway.service}"
name="$(basename "$unit")"

if ! command -v systemd-analyze >/dev/null 2>&1; then
  echo "Installing systemd (for systemd-analyze)"
  # shellcheck source=scripts/lib/apt.sh
  . "$(dirname "${BASH_SOURCE[0]}")/lib/apt.sh"
  apt_install "systemd-analyze is missing; install the systemd package (not root, no sudo)" systemd
fi

if [ ! -x "$binary" ]; then
  if [ $# -gt 0 ]; then
    echo "error: $binary is not an executable file" >&2
    exit 1
  fi
  cargo build --quiet --bin zello-gateway
fi
binary="$(realpath "$binary")"
case "$binary" in
  *'|'* | *' '*)
    echo "error: the binary's path ($binary) must not contain '|' or spaces" >&2
    exit 1
    ;;
esac

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
sed "s|$installed|$binary|g" "$unit" >"$work/$name"
if grep -q "$installed" "$work/$name"; then
  echo "error: $installed is left in the copy of $unit" >&2
  exit 1
fi

# Verifies $work/$name (with any drop-ins in $work/$name.d), failing on any output.
verify() {
  local what="$1" status=0 output
  output="$(cd "$work" && systemd-analyze verify --man=no "$work/$name" 2>&1)" || status=$?
  if [ "$status" -ne 0 ] || [ -n "$output" ]; then
    printf '%s\n' "$output" | sed "s|$work/||g"
    echo "error: systemd-analyze verify found problems in $what (exit status $status)" >&2
    exit 1
  fi
  echo "systemd-analyze verify $what: no problems"
}

verify "$unit"

# The sandbox's rating, listing what is left open when it is too exposed.
max_exposure="${MAX_EXPOSURE:-3.5}"
status=0
security="$(cd "$work" && systemd-analyze security --offline=true --man=no "$work/$name" 2>&1)" || status=$?
exposure="$(printf '%s\n' "$security" | sed -n 's/^.*Overall exposure level for .*: \([0-9][0-9.]*\) .*$/\1/p')"
if [ "$status" -ne 0 ] || [ -z "$exposure" ]; then
  printf '%s\n' "$security" | sed "s|$work/||g"
  echo "error: systemd-analyze security could not rate $unit (exit status $status)" >&2
  exit 1
fi
if ! awk -v e="$exposure" -v m="$max_exposure" 'BEGIN { exit !(e <= m) }'; then
  printf '%s\n' "$security" | grep -v '^✓' | sed "s|$work/||g"
  echo "error: $unit is rated $exposure by systemd-analyze security; at most $max_exposure is allowed" >&2
  exit 1
fi
echo "systemd-analyze security $unit: exposure $exposure (at most $max_exposure)"
# The Debian package's drop-in, which moves the commands to /usr/bin.
if [ $# -lt 2 ]; then
  mkdir "$work/$name.d"
  sed "s|/usr/bin/zello-gateway|$binary|g" systemd/deb-usr-bin.conf >"$work/$name.d/deb-usr-bin.conf"
  verify "$unit with systemd/deb-usr-bin.conf"
fi
echo "($(systemd-analyze --version | head -n1); Exec paths checked with $binary)"
