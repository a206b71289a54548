#!/usr/bin/env bash
# The one command that runs every test, on a fresh machine: installs what is missing (build
# tools, the Kafka broker, the Python reader), starts the services on loopback, runs the
# workspace's tests against them, and stops the services again.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/build-deps.sh

scripts/services.sh install
trap 'scripts/services.sh stop >/dev/null 2>&1 || true' EXIT
scripts/services.sh start kafka postgres mariadb
eval "$(scripts/services.sh env)"

cargo test --workspace --no-fail-fast "$@"
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --workspace --quiet
