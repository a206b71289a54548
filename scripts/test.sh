#!/usr/bin/env bash
# The one command that runs every test, on a fresh machine: installs what is missing (build
# tools, the Kafka broker, the Python reader, the S3 and Azure emulators), starts the services on loopback, runs the
# workspace's tests against them, and stops the services again.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/build-deps.sh

scripts/services.sh install kafka venv ui s3 azurite
trap 'scripts/services.sh stop >/dev/null 2>&1 || true' EXIT
scripts/services.sh start kafka postgres mariadb mysql s3 azurite
eval "$(scripts/services.sh env)"

cargo test --workspace --no-fail-fast "$@"
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --workspace --quiet
