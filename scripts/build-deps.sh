#!/usr/bin/env bash
# Installs what building rtsync needs beyond the Rust toolchain, when missing: cmake and
# libcurl's headers (librdkafka is built from source with SSL, SASL/OAUTHBEARER and zstd).
set -euo pipefail
missing=()
command -v cmake >/dev/null 2>&1 || missing+=(cmake)
for pkg in libcurl4-openssl-dev libssl-dev zlib1g-dev pkg-config; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "build-deps.sh: installing ${missing[*]}" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
