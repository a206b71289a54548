#!/usr/bin/env bash
# The main job on a fresh machine: builds rtsync and runs `rtsync demo` (no external service:
# librdkafka's in-process mock cluster is the broker). Arguments go to `rtsync demo`.
#
# It builds the rtsync binary alone, in the dev profile (dependencies at opt-level 1): the demo
# needs no release optimisation, a release build takes longer (32 minutes from clean here), and
# scripts/test.sh then reuses every dependency this build compiled.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/build-deps.sh
# Measured: a clean dev-profile build of the whole workspace with its tests took 26 minutes on
# a 2-core machine; the binary alone is a part of that.
echo "demo.sh: building rtsync: about 25 minutes from clean on 2 cores, seconds when already built" >&2
cargo build --bin rtsync
exec "${CARGO_TARGET_DIR:-target}/debug/rtsync" demo "$@"
