#!/usr/bin/env bash
# A real Docker Engine (Debian's docker.io 20.10, API 1.41), started by hand as root with no
# systemd and no network: no docker0 bridge, no iptables rules, so containers get only a
# loopback interface (network "none" / "host") and no private-range address ever exists.
# Pulls from any registry not on 127.0.0.1 fail at once (proxy pointed at a closed port).
#
# Usage:  scripts/start-dockerd.sh          # install if missing, start (idempotent)
#         scripts/start-dockerd.sh stop     # stop the daemon started by this script
# Env:    DOCKERD_STATE=/tmp/dockerd-ci  DOCKERD_DATA_ROOT=/var/lib/docker
#         DOCKERD_SOCK=/var/run/docker.sock  DOCKERD_EXEC_ROOT=/var/run/docker
#         DOCKERD_STORAGE=overlay2 (vfs also works, slower and bigger)
set -euo pipefail

STATE=${DOCKERD_STATE:-/tmp/dockerd-ci}
DATA_ROOT=${DOCKERD_DATA_ROOT:-/var/lib/docker}
SOCK=${DOCKERD_SOCK:-/var/run/docker.sock}
STORAGE=${DOCKERD_STORAGE:-overlay2}
EXEC_ROOT=${DOCKERD_EXEC_ROOT:-/var/run/docker}
PIDFILE=$STATE/dockerd.pid
LOG=$STATE/dockerd.log
mkdir -p "$STATE"

ping_ok() { curl -fsS --max-time 2 --unix-socket "$SOCK" http://localhost/_ping 2>/dev/null | grep -q OK; }

if [[ ${1:-start} == stop ]]; then
  if [[ -f $PIDFILE ]]; then
    pid=$(cat "$PIDFILE")
    if kill -0 "$pid" 2>/dev/null; then
      kill -TERM "$pid"            # dockerd stops its containers and its containerd
      for _ in $(seq 1 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
      kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
    fi
    rm -f "$PIDFILE"
  fi
  # network-namespace bind mounts dockerd leaves behind (only under our exec-root)
  for ns in "$EXEC_ROOT"/netns/*; do
    [[ -e $ns ]] && mountpoint -q "$ns" && umount "$ns" 2>/dev/null || true
  done
  exit 0
fi

# 1. install Debian's packages when missing (~20 s on a fresh machine)
if ! command -v dockerd >/dev/null || ! command -v curl >/dev/null || [[ ! -x /bin/busybox ]]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >/dev/null
  apt-get install -y -q --no-install-recommends docker.io busybox-static curl >/dev/null
fi

if ping_ok; then echo "dockerd already answering on $SOCK"; exit 0; fi

# 2. start; dockerd supervises its own containerd (under $EXEC_ROOT/containerd).
#    --bridge=none / --iptables=false: no docker0, no NAT, no 172.17.x addresses.
#    cgroupfs driver (no systemd). HTTP(S)_PROXY -> a closed loopback port: a pull from any
#    registry that is not on loopback fails at once instead of going out; the local registry
#    on 127.0.0.1:5000 (start-registry.sh) is reached directly (NO_PROXY).
HTTP_PROXY=http://127.0.0.1:9 HTTPS_PROXY=http://127.0.0.1:9 NO_PROXY=127.0.0.1,localhost,::1 \
setsid dockerd \
  --host "unix://$SOCK" \
  --data-root "$DATA_ROOT" \
  --exec-root "$EXEC_ROOT" \
  --pidfile "$EXEC_ROOT.pid" \
  --storage-driver "$STORAGE" \
  --bridge=none --iptables=false --ip6tables=false --ip-masq=false \
  --exec-opt native.cgroupdriver=cgroupfs \
  --shutdown-timeout=5 \
  --log-level=warn \
  >"$LOG" 2>&1 < /dev/null &
echo $! > "$PIDFILE"

for _ in $(seq 1 150); do
  ping_ok && break
  kill -0 "$(cat "$PIDFILE")" 2>/dev/null || { echo "dockerd died; log:"; tail -30 "$LOG"; exit 1; }
  sleep 0.2
done
ping_ok || { echo "dockerd did not answer in 30 s; log:"; tail -30 "$LOG"; exit 1; }
echo "dockerd up, pid $(cat "$PIDFILE"), socket $SOCK"
