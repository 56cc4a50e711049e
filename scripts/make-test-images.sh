#!/usr/bin/env bash
# Builds the images the Docker tests run, with no internet, through the Engine API (curl):
#   local/busybox:1       import of a busybox-static rootfs (CMD /bin/sh)
#   xtm-test/ticker:1     a "connector": runs until stopped, logs "tick N out" to stdout and
#                         "tick N err" to stderr every second; exits at once on SIGTERM
#   xtm-test/crasher:1    logs one line, exits with code 3 after ~1 s
# then pushes ticker and crasher to the authenticated registry (start-registry.sh) as
# 127.0.0.1:5000/xtm-test/{ticker,crasher}:1 and deletes those registry-tagged copies
# locally, so a deploy from the registry really pulls.
# Usage: scripts/make-test-images.sh        Env: DOCKERD_SOCK (/var/run/docker.sock),
#        CIREG_ADDR (127.0.0.1:5000), CIREG_USER / CIREG_PASSWORD (ci / ci-pass),
#        XTM_IMAGES_LOCAL_ONLY=1: build the local images only, no registry (scripts/run.sh's demo)
set -euo pipefail
SOCK=${DOCKERD_SOCK:-/var/run/docker.sock}
REG=${CIREG_ADDR:-127.0.0.1:5000}
USER_=${CIREG_USER:-ci}
PASS=${CIREG_PASSWORD:-ci-pass}
LOCAL_ONLY=${XTM_IMAGES_LOCAL_ONLY:-}
BB=/bin/busybox
V=v1.41
[[ -x $BB ]] || { DEBIAN_FRONTEND=noninteractive apt-get install -y -q busybox-static >/dev/null; }

api() { curl -fsS --unix-socket "$SOCK" "$@"; }
# A 200 progress stream can still carry an error object: fail on it.
stream_ok() { if grep -q '"error' "$1"; then cat "$1"; return 1; fi; }

# Already built and pushed (a re-run on the same machine): nothing to do.
have_local() { curl -fsS -o /dev/null --unix-socket "$SOCK" "http://localhost/$V/images/$1/json" 2>/dev/null; }
have_pushed() {
  curl -fsS -o /dev/null -u "$USER_:$PASS" -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' \
    "http://$REG/v2/xtm-test/$1/manifests/1" 2>/dev/null
}
if have_local local/busybox:1 && have_local xtm-test/ticker:1 && have_local xtm-test/crasher:1 \
  && { [[ -n $LOCAL_ONLY ]] || { have_pushed ticker && have_pushed crasher; }; }; then
  echo "images ready (already built): local/busybox:1 xtm-test/ticker:1 xtm-test/crasher:1 and $REG/xtm-test/"
  exit 0
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# 1. local/busybox:1: one symlink per applet (sh, sleep, echo, cat, ...)
mkdir -p "$work/rootfs"/{bin,sbin,usr/bin,usr/sbin,etc/ssl/certs,tmp,proc,sys,dev,root,var/log}
chmod 1777 "$work/rootfs/tmp"
cp "$BB" "$work/rootfs/bin/busybox"
for a in $("$BB" --list); do
  [[ $a == busybox ]] || ln -sf /bin/busybox "$work/rootfs/bin/$a"
done
echo 'root:x:0:0:root:/root:/bin/sh' > "$work/rootfs/etc/passwd"
echo 'root:x:0:' > "$work/rootfs/etc/group"
tar -C "$work/rootfs" -cf "$work/rootfs.tar" .
api -X POST -H 'Content-Type: application/x-tar' --data-binary @"$work/rootfs.tar" \
  "http://localhost/$V/images/create?fromSrc=-&repo=local/busybox&tag=1&changes=CMD%20%5B%22%2Fbin%2Fsh%22%5D" \
  > "$work/import.out"
stream_ok "$work/import.out"

# 2. ticker and crasher: FROM local/busybox:1 with a script as CMD
build() { # name script
  local ctx=$work/ctx-$1
  mkdir -p "$ctx"
  printf '%s\n' "$2" > "$ctx/run.sh"
  chmod 755 "$ctx/run.sh"
  printf 'FROM local/busybox:1\nCOPY run.sh /bin/run.sh\nENV PATH=/bin:/sbin:/usr/bin:/usr/sbin\nCMD ["/bin/run.sh"]\n' \
    > "$ctx/Dockerfile"
  tar -C "$ctx" -cf "$ctx.tar" .
  api -X POST -H 'Content-Type: application/x-tar' --data-binary @"$ctx.tar" \
    "http://localhost/$V/build?t=xtm-test/$1:1&rm=1&forcerm=1" > "$ctx.out"
  stream_ok "$ctx.out"
}
# `sleep & wait`: a trapped SIGTERM interrupts `wait` at once (a foreground sleep would not).
build ticker '#!/bin/sh
trap "exit 0" TERM INT
i=0
while :; do
  i=$((i+1))
  echo "tick $i out"
  echo "tick $i err" >&2
  sleep 1 & wait $!
done'
build crasher '#!/bin/sh
echo "crasher starting"
echo "crasher failing" >&2
sleep 1
exit 3'

if [[ -n $LOCAL_ONLY ]]; then
  echo "images ready: local/busybox:1 xtm-test/ticker:1 xtm-test/crasher:1 (not pushed)"
  exit 0
fi

# 3. push to the authenticated registry; X-Registry-Auth is base64url JSON
auth=$(printf '{"username":"%s","password":"%s","serveraddress":"%s"}' "$USER_" "$PASS" "$REG" \
  | base64 -w0 | tr '+/' '-_')
for name in ticker crasher; do
  api -X POST "http://localhost/$V/images/xtm-test/$name:1/tag?repo=$REG/xtm-test/$name&tag=1" >/dev/null
  api -X POST -H "X-Registry-Auth: $auth" \
    "http://localhost/$V/images/$REG/xtm-test/$name/push?tag=1" > "$work/push-$name.out"
  stream_ok "$work/push-$name.out"
  # untag only: the layers stay (shared with xtm-test/$name:1), the reference must be pulled
  api -X DELETE "http://localhost/$V/images/$REG/xtm-test/$name:1?noprune=1" >/dev/null
done
echo "images ready: local/busybox:1 xtm-test/ticker:1 xtm-test/crasher:1; pushed to $REG/xtm-test/"
