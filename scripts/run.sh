#!/usr/bin/env bash
# Builds the release binary and runs the composer with ./config.
# Without MANAGER__CREDENTIALS_KEY(_FILEPATH) it makes a development key in .local/.
# The selector defaults to docker here (the shipped default.yaml keeps the existing
# composer's `kubernetes`); override any key with its env var, e.g. OPENCTI__URL.
# Extra arguments go to the binary: scripts/run.sh check, scripts/run.sh plan.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v cc >/dev/null || ! command -v openssl >/dev/null; then
  DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q gcc openssl >/dev/null
fi
cargo build --release --locked
if [[ -z "${MANAGER__CREDENTIALS_KEY:-}${MANAGER__CREDENTIALS_KEY_FILEPATH:-}" ]]; then
  key=.local/dev-key.pem
  if [[ ! -f $key ]]; then
    mkdir -p .local
    (umask 077; openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:4096 -out "$key" 2>/dev/null)
    echo "made a development key at $key"
  fi
  export MANAGER__CREDENTIALS_KEY_FILEPATH=$PWD/$key
fi
export OPENCTI__DAEMON__SELECTOR=${OPENCTI__DAEMON__SELECTOR:-docker}
exec target/release/xtm-composer --config config "$@"
