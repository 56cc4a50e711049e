#!/usr/bin/env bash
# A real image registry (Debian's docker-registry, distribution 2.8) on 127.0.0.1:5000 that
# requires basic auth (user ci, password ci-pass), so pulls with X-Registry-Auth are tested
# for real and offline. dockerd treats 127.0.0.0/8 registries as insecure (plain HTTP).
#
# Usage:  scripts/start-registry.sh          # start (idempotent)
#         scripts/start-registry.sh stop     # stop the registry started by this script
# Env:    CIREG_STATE=/tmp/registry-ci   CIREG_ADDR=127.0.0.1:5000   CIREG_AUTH=1 (0: no auth)
set -euo pipefail
STATE=${CIREG_STATE:-/tmp/registry-ci}
ADDR=${CIREG_ADDR:-127.0.0.1:5000}
PIDFILE=$STATE/registry.pid

if [[ ${1:-start} == stop ]]; then
  if [[ -f $PIDFILE ]]; then
    pid=$(cat "$PIDFILE")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    rm -f "$PIDFILE"
  fi
  exit 0
fi

answers() {
  local code
  code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://$ADDR/v2/" || true)
  [[ $code == 200 || $code == 401 ]]
}
if [[ -f $PIDFILE ]] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null && answers; then
  echo "registry already answering on $ADDR"; exit 0
fi

install() {
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q --no-install-recommends "$@" >/dev/null 2>&1 \
    || { apt-get update -q >/dev/null; apt-get install -y -q --no-install-recommends "$@" >/dev/null; }
}
command -v docker-registry >/dev/null || install docker-registry
command -v curl >/dev/null || install curl

mkdir -p "$STATE/data"
AUTH=""
if [[ ${CIREG_AUTH:-1} == 1 ]]; then
  command -v htpasswd >/dev/null || install apache2-utils
  htpasswd -Bbc "$STATE/htpasswd" ci ci-pass >/dev/null 2>&1
  AUTH=$'auth:\n  htpasswd:\n    realm: ci-realm\n    path: '"$STATE/htpasswd"
fi
cat > "$STATE/config.yml" <<CFG
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $STATE/data
  delete:
    enabled: true
http:
  addr: $ADDR
$AUTH
CFG
# env -i: docker-registry reads any REGISTRY_* variable as a config override.
setsid env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin docker-registry serve "$STATE/config.yml" \
  >"$STATE/registry.log" 2>&1 </dev/null &
echo $! > "$PIDFILE"
for _ in $(seq 1 100); do
  answers && { echo "registry up on $ADDR (pid $(cat "$PIDFILE"))"; exit 0; }
  kill -0 "$(cat "$PIDFILE")" 2>/dev/null || break
  sleep 0.1
done
echo "registry did not start; log:"; tail -30 "$STATE/registry.log"; exit 1
