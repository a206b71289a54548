#!/usr/bin/env bash
# The one command that runs every test, on a fresh machine: installs what is missing (build
# tools, the Kafka broker, the Python reader, Oracle MySQL, the S3 and Azure emulators), starts
# the services on loopback, runs the workspace's tests against them (doc tests included), checks
# that `cargo doc` is warning-free, and stops the services again.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/build-deps.sh

scripts/services.sh install kafka venv ui s3 azurite helm
# tests/api_schemathesis.rs runs the daemon and schemathesis (from the venv) in a network
# namespace of its own: unshare (util-linux) and ip (iproute2) bring it up.
if ! command -v ip >/dev/null 2>&1; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iproute2 >/dev/null
fi
trap 'scripts/services.sh stop >/dev/null 2>&1 || true' EXIT
scripts/services.sh start kafka postgres mariadb mysql s3 azurite
eval "$(scripts/services.sh env)"

cargo test --workspace --no-run "$@"
# The documentation check builds in its own target directory, at low priority, while the tests
# run (they mostly wait on the services).
doc_log="target/doc-check.log"
mkdir -p target
( RUSTDOCFLAGS="-D warnings" CARGO_TARGET_DIR=target/doc-check nice -n 19 \
    cargo doc --no-deps --workspace --quiet >"$doc_log" 2>&1 ) &
doc_pid=$!
tests_rc=0
cargo test --workspace --no-fail-fast "$@" || tests_rc=$?
doc_rc=0
wait "$doc_pid" || doc_rc=$?
if [[ $doc_rc -ne 0 ]]; then
    cat "$doc_log" >&2
    echo "test.sh: cargo doc --no-deps with -D warnings failed (above)" >&2
fi
[[ $tests_rc -eq 0 && $doc_rc -eq 0 ]]
