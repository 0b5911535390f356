#!/usr/bin/env bash
# Checks the shell scripts: bash -n, then shellcheck (installed through apt if missing).
set -euo pipefail
cd "$(dirname "$0")/.."

for f in scripts/*.sh scripts/lib/*.sh .ci/run debian/postinst debian/postrm; do
  bash -n "$f"
done

if ! command -v shellcheck >/dev/null 2>&1; then
  echo "Installing shellcheck"
  if [ "$(id -u)" -eq 0 ]; then
    SUDO=""
  elif command -v sudo >/dev/null 2>&1; then
    SUDO="sudo"
  else
    echo "error: shellcheck is missing; install it (not root, no sudo)" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends shellcheck >/dev/null
fi
shellcheck -x scripts/*.sh scripts/lib/*.sh .ci/run debian/postinst debian/postrm
echo "scripts: bash -n and shellcheck clean"
