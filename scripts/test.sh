#!/usr/bin/env bash
# Runs every check CI runs: formatting, clippy with warnings denied, every test, then the
# systemd unit (systemd-analyze verify) and the shell scripts (shellcheck).
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
