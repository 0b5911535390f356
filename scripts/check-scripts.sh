#!/usr/bin/env bash
# Checks the shell scripts: bash -n, then shellcheck (installed through apt if missing).
set -euo pipefail
cd "$(dirname "$0")/.."

for f in scripts/*.sh scripts/lib/*.sh .ci/run debian/postinst debian/postrm; do
  bash -n "$f"
done

# shellcheck source=scripts/lib/apt.sh
. scripts/lib/apt.sh
if ! command -v shellcheck >/dev/null 2>&1; then
  echo "Installing shellcheck"
  apt_install "shellcheck is missing; install it (not root, no sudo)" shellcheck
fi
shellcheck -x scripts/*.sh scripts/lib/*.sh .ci/run debian/postinst debian/postrm
echo "scripts: bash -n and shellcheck clean"
