#!/usr/bin/env bash
# Runs the self-contained demo: a local Zello-compatible server, the gateway on a simulated
# radio, and a simulated dispatcher. No account and no hardware needed.
set -euo pipefail
cd "$(dirname "$0")/.."
# Only what the build needs: the test packages (PulseAudio, Hamlib) are for scripts/test.sh.
scripts/deps.sh --build-only
cargo run --release --quiet -- demo "$@"
