#!/usr/bin/env bash
# A single-node Docker Swarm on loopback, for the Swarm orchestrator tests (/services, /tasks,
# /configs). No private-range address is made: docker_gwbridge is created first on
# 127.254.0.0/24 and the ingress (routing-mesh, 10.0.0.0/24) network is removed as soon as the
# swarm exists, so services must use the "host" network (or none) and cannot publish ports.
# Plain containers keep working while the swarm is active.
#
# Usage:  scripts/swarm.sh init     # idempotent; needs scripts/start-dockerd.sh first
#         scripts/swarm.sh leave    # removes every service, leaves, drops docker_gwbridge
# Env:    DOCKERD_SOCK=/var/run/docker.sock
set -euo pipefail
SOCK=${DOCKERD_SOCK:-/var/run/docker.sock}
api() { curl -fsS --max-time 30 --unix-socket "$SOCK" "$@"; }
# A string field of /info's JSON, without python (not on a fresh Debian 12): "Key":"value".
info_field() { api http://localhost/info | sed -n "s/.*\"$1\":\"\([^\"]*\)\".*/\1/p"; }
node_state() { info_field LocalNodeState; }

case ${1:-init} in
init)
  if [[ $(node_state) == active ]]; then
    api -X DELETE http://localhost/networks/ingress >/dev/null 2>&1 || true
    echo "swarm already active"
    exit 0
  fi
  if ! api http://localhost/networks/docker_gwbridge >/dev/null 2>&1; then
    api -X POST -H 'Content-Type: application/json' http://localhost/networks/create -d '{
      "Name": "docker_gwbridge", "Driver": "bridge",
      "IPAM": {"Config": [{"Subnet": "127.254.0.0/24", "Gateway": "127.254.0.1"}]},
      "Options": {"com.docker.network.bridge.name": "docker_gwbridge",
                  "com.docker.network.bridge.enable_icc": "false",
                  "com.docker.network.bridge.enable_ip_masquerade": "false"}}' >/dev/null
  fi
  api -X POST -H 'Content-Type: application/json' http://localhost/swarm/init \
    -d '{"ListenAddr": "127.0.0.1:2377", "AdvertiseAddr": "127.0.0.1", "DataPathAddr": "127.0.0.1"}' >/dev/null
  # The ingress network appears a moment after init; drop it before anything attaches to it.
  for _ in $(seq 1 50); do
    api -X DELETE http://localhost/networks/ingress >/dev/null 2>&1 && break
    sleep 0.2
  done
  node=$(info_field NodeID)
  echo "swarm active (node $node, manager on 127.0.0.1:2377)"
  ;;
leave)
  api -X POST 'http://localhost/swarm/leave?force=true' >/dev/null 2>&1 || true
  api -X DELETE http://localhost/networks/docker_gwbridge >/dev/null 2>&1 || true
  echo "swarm left"
  ;;
*)
  echo "usage: $0 init|leave" >&2
  exit 2
  ;;
esac
