#!/usr/bin/env bash
# The main job on a fresh machine: builds rtsync and runs `rtsync demo` (no external service:
# librdkafka's in-process mock cluster is the broker). Arguments go to `rtsync demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/build-deps.sh
cargo build --release --bin rtsync
exec "${CARGO_TARGET_DIR:-target}/release/rtsync" demo "$@"
