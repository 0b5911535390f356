#!/usr/bin/env bash
# Runs every check CI runs: formatting, clippy with warnings denied, every test, then the
# systemd unit (systemd-analyze verify and security), the shell scripts (shellcheck) and the
# Debian package (one release build, its contents and lintian).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
cargo fmt --all -- --check
cargo clippy --all-targets -- -D warnings
# The sound-card tests play and record through PulseAudio null sinks behind ALSA.
scripts/pulse-test-env.sh
cargo test
# The unit, verified against the binary cargo test built (installs systemd-analyze if missing).
scripts/verify-unit.sh
scripts/check-scripts.sh
# The Debian package, built once (a release build) and checked (installs cargo-deb and lintian
# if missing).
scripts/check-package.sh
