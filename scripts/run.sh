#!/usr/bin/env bash
# Builds the release binary and runs the composer with ./config.
# Without MANAGER__CREDENTIALS_KEY(_FILEPATH) it makes a development key in .local/.
# The selector defaults to docker here (the shipped default.yaml keeps the existing
# composer's `kubernetes`); override any key with its env var, e.g. OPENCTI__URL.
# Extra arguments go to the binary: scripts/run.sh check, scripts/run.sh plan.
#
# First run, no platform configured (no OPENCTI__URL and no config/$COMPOSER_ENV.yaml): a
# demo. A local stand-in platform (examples/demo_platform.rs, not part of the shipped
# binary) serves three connectors with an encrypted setting; a local dockerd is started if
# none answers (scripts/start-dockerd.sh) and the connector image is built locally; then the
# composer runs against both. Its log and the platform's "demo:" lines show the connectors
# deployed, started and their logs shipped. Ctrl-C stops the composer and the stand-in; the
# connector containers stay (the composer never removes workloads when it stops).
# Env: XTM_RUN_PROFILE=debug uses the debug build; XTM_RUN_BUILT=1 skips cargo (tests, which
#      already built both binaries); DOCKERD_SOCK (/var/run/docker.sock).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v cc >/dev/null || ! command -v openssl >/dev/null || ! command -v curl >/dev/null; then
  DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q gcc openssl curl >/dev/null
fi
# Edition 2024 and the crates' MSRV: Debian 12's own rustc (1.63) cannot build this.
need=1.88
have=$(rustc --version 2>/dev/null | awk '{print $2}')
if [[ -z $have ]] || [[ $(printf '%s\n%s\n' "$need" "${have%%-*}" | sort -V | head -n1) != "$need" ]]; then
  echo "scripts/run.sh: building needs Rust >= $need (found: ${have:-none}; Debian 12's rustc is 1.63)." >&2
  echo "  Install it with rustup (https://rustup.rs), then run this script again." >&2
  exit 1
fi

profile=${XTM_RUN_PROFILE:-release}
target_dir=$(realpath -m "${CARGO_TARGET_DIR:-target}")
# Debug (tests): built with the demo platform, so the features match `cargo build
# --all-targets` and nothing is rebuilt.
if [[ -n ${XTM_RUN_BUILT:-} ]]; then :
elif [[ $profile == release ]]; then cargo build --release --locked
else cargo build --locked --bin xtm-composer --example demo_platform; fi
bin=$target_dir/$profile/xtm-composer

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

if [[ -n ${OPENCTI__URL:-} || -f config/${COMPOSER_ENV:-production}.yaml ]]; then
  exec "$bin" --config config "$@"
fi

# ---- The demo: no platform configured. ----
echo "run.sh: no platform configured (OPENCTI__URL unset): starting a local demo platform."
sock=${DOCKERD_SOCK:-/var/run/docker.sock}
if ! curl -fsS --max-time 2 --unix-socket "$sock" http://localhost/_ping >/dev/null 2>&1; then
  echo "run.sh: no Docker engine answers on $sock: starting one (scripts/start-dockerd.sh)."
  bash scripts/start-dockerd.sh
fi
XTM_IMAGES_LOCAL_ONLY=1 bash scripts/make-test-images.sh
[[ -n ${XTM_RUN_BUILT:-} ]] || cargo build --locked --example demo_platform
url_file=$(mktemp)
"$target_dir/debug/examples/demo_platform" "$url_file" demo-token &
demo=$!
trap 'kill "$demo" 2>/dev/null || true; rm -f "$url_file"' EXIT
for _ in $(seq 1 100); do [[ -s $url_file ]] && break; sleep 0.1; done
[[ -s $url_file ]] || { echo "run.sh: the demo platform did not start" >&2; exit 1; }

export OPENCTI__URL=$(cat "$url_file")
export OPENCTI__TOKEN=demo-token
export MANAGER__ID=${MANAGER__ID:-demo-composer}
export MANAGER__NAME=${MANAGER__NAME:-Demo composer}
export MANAGER__LOGGER__FORMAT=${MANAGER__LOGGER__FORMAT:-pretty}
export MANAGER__EXECUTE_SCHEDULE=${MANAGER__EXECUTE_SCHEDULE:-5}
export OPENCTI__LOGS_SCHEDULE=${OPENCTI__LOGS_SCHEDULE:-5}
export DOCKER_HOST=${DOCKER_HOST:-unix://$sock}
echo "run.sh: composer against $OPENCTI__URL, engine $DOCKER_HOST; Ctrl-C stops both."
echo "run.sh: for a real platform: OPENCTI__URL=https://... OPENCTI__TOKEN=... scripts/run.sh"
"$bin" --config config "$@" &
composer=$!
trap 'kill "$composer" "$demo" 2>/dev/null || true; wait "$composer" 2>/dev/null; rm -f "$url_file"' EXIT INT TERM
wait "$composer"
