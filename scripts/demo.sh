#!/usr/bin/env bash
# Runs the self-contained demo: a local Zello-compatible server, the gateway on a simulated
# radio, and a simulated dispatcher. No account and no hardware needed.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
cargo run --release --quiet -- demo "$@"
