#!/usr/bin/env bash
# Builds the Debian package with cargo-deb: a release build, then
# target/debian/zello-gateway_VERSION-1_ARCH.deb (the binary as /usr/bin/zello-gateway, the
# unit with its /usr/bin drop-in, the udev rules, the example configurations, the docs).
# Installs what is missing: the build packages (scripts/deps.sh --build-only), cargo-deb
# (cargo install --locked) and lintian (apt, for scripts/check-package.sh).
# The .deb's path is the last line printed on stdout.
#
# usage: scripts/package.sh [--no-build]
#   --no-build  package target/release/zello-gateway as it is, without building it again
set -euo pipefail
cd "$(dirname "$0")/.."

no_build=false
case "${1:-}" in
  --no-build) no_build=true ;;
  "") ;;
  *)
    echo "usage: scripts/package.sh [--no-build]" >&2
    exit 2
    ;;
esac

scripts/deps.sh --build-only >&2
if ! cargo deb --version >/dev/null 2>&1; then
  echo "Installing cargo-deb" >&2
  cargo install cargo-deb --locked >&2
fi
if ! command -v lintian >/dev/null 2>&1; then
  echo "Installing lintian" >&2
  # shellcheck source=scripts/lib/apt.sh
  . "$(dirname "${BASH_SOURCE[0]}")/lib/apt.sh"
  apt_install "lintian is missing; install it (not root, no sudo)" lintian
fi

# cargo-deb prints the package's path on stdout, its progress on stderr.
if $no_build; then
  cargo deb --no-build
else
  cargo deb
fi
