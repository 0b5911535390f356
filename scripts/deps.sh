#!/usr/bin/env bash
# Installs the system packages zello-gateway builds and tests against, if any are missing.
# Safe to run again: it installs nothing when everything is there.
#
#   scripts/deps.sh               build and test packages (development, CI)
#   scripts/deps.sh --build-only  only what the build needs (scripts/install.sh on a gateway)
set -euo pipefail

# What the build links against (the runtime libraries libopus0 and libasound2 come with them).
build_packages=(pkg-config libopus-dev libasound2-dev)
# libhamlib-utils: rigctld, whose dummy rig the rigctld PTT and carrier tests run against.
# pulseaudio, pulseaudio-utils, libasound2-plugins: null sinks behind ALSA for the sound tests.
# systemd: systemd-analyze, which checks the unit and rates its sandbox (scripts/verify-unit.sh).
# lintian: checks the Debian package (scripts/check-package.sh).
# alsa-utils: arecord, the plain ALSA client `zello-gateway bench --device` compares the
# gateway's idle cost with.
# mosquitto: the MQTT broker (and mosquitto_passwd) the [mqtt] tests publish to.
test_packages=(libhamlib-utils pulseaudio pulseaudio-utils libasound2-plugins systemd lintian alsa-utils mosquitto)
test_packages+=(chromium chromium-driver) # the dashboard's test in a headless browser (tests/dashboard.rs)

case "${1:-}" in
  --build-only) packages=("${build_packages[@]}") ;;
  "") packages=("${build_packages[@]}" "${test_packages[@]}") ;;
  *)
    echo "usage: scripts/deps.sh [--build-only]" >&2
    exit 2
    ;;
esac

if ! command -v cargo >/dev/null 2>&1; then
  echo "error: cargo (the Rust toolchain) is not installed." >&2
  echo "Install it with: curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh" >&2
  exit 1
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "Installing missing packages: ${missing[*]}"
# shellcheck source=scripts/lib/apt.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/apt.sh"
apt_install "not root and no sudo; install these packages first: ${missing[*]}" "${missing[@]}"
