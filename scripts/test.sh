#!/usr/bin/env bash
# The whole test suite, from a fresh Debian 12 machine, as root:
#   installs what the tests need (Debian's docker.io, docker-registry, busybox-static,
#   prometheus;
#   PyPI's kubernetes-validate),
#   starts a real dockerd (no bridge, no iptables) and an authenticated local registry
#   on 127.0.0.1:5000, builds the test images locally, then runs every test.
# Stops dockerd and the registry on exit. Nothing is pulled from the internet.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never

started=()
cleanup() {
  for s in "${started[@]}"; do bash "scripts/$s" stop >/dev/null 2>&1 || true; done
}
trap cleanup EXIT

t0=$(date +%s)
if [[ $(id -u) -ne 0 ]]; then
  echo "scripts/test.sh: run as root (it installs packages and starts dockerd)" >&2
  exit 1
fi
if ! command -v cc >/dev/null || ! command -v curl >/dev/null; then
  DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q gcc curl >/dev/null
fi

# A real Prometheus and promtool scrape and lint /metrics (tests/observability.rs).
# Only the binaries are used: the tests start their own server on free loopback ports;
# a service the package may have started is stopped so nothing else holds port 9090.
if ! command -v prometheus >/dev/null || ! command -v promtool >/dev/null; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends prometheus >/dev/null 2>&1 \
    || { apt-get update -q >/dev/null; DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends prometheus >/dev/null; }
  { systemctl disable --now prometheus || service prometheus stop; } >/dev/null 2>&1 || true
fi

# The official Kubernetes schemas, as a validator (tests/kubernetes.rs); pinned,
# since tests/fixtures/k8s-schemas/ are checked to be its exact copies.
python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore \
  kubernetes-validate==1.37.0

# Stop on exit only what this run started (a developer's running engine stays up).
sock=/var/run/docker.sock
if ! curl -fsS --max-time 2 --unix-socket "$sock" http://localhost/_ping >/dev/null 2>&1; then
  started+=(start-dockerd.sh)
fi
bash scripts/start-dockerd.sh
if ! curl -s -o /dev/null --max-time 2 http://127.0.0.1:5000/v2/; then
  started+=(start-registry.sh)
fi
CIREG_AUTH=1 bash scripts/start-registry.sh
bash scripts/make-test-images.sh
# The Swarm tests need this engine to be a swarm manager (idempotent; plain containers keep working).
bash scripts/swarm.sh init
echo "engines ready after $(( $(date +%s) - t0 )) s"

cargo build --all-targets --locked
bash scripts/package.sh   # artefacts for tests/packaging.rs; needs dockerd, so it runs here
cargo test --locked --no-fail-fast -- --test-threads="${TEST_THREADS:-4}"
echo "scripts/test.sh: all tests ran in $(( $(date +%s) - t0 )) s"
