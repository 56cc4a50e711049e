#!/usr/bin/env bash
# Dependency review, offline: cargo-deny (licences, bans, sources, advisories) against the
# RustSec snapshot in packaging/advisory-db/ (CI cannot reach the live database).
# Installs cargo-deny from crates.io when missing (~3 min build). Prints the crate count.
# Usage: scripts/audit.sh          Live database instead: `cargo deny check` (docs/packaging.md)
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never
t0=$(date +%s)
DENY_VERSION=0.20.2

if ! cargo deny --version 2>/dev/null | grep -q "cargo-deny $DENY_VERSION"; then
  cargo install --locked --quiet cargo-deny --version "$DENY_VERSION"
  echo "audit: cargo-deny $DENY_VERSION installed in $(( $(date +%s) - t0 )) s"
fi

# The network step first: every package in Cargo.lock, all platforms (cargo-deny reads every
# manifest; a fresh CI machine only has what clippy compiled). Everything after is offline.
cargo fetch --locked --quiet

# cargo-deny opens the database as a git repository at <db-path>/advisory-db-<hash of the
# URL>; the snapshot is a plain tree, so it is committed into a fresh repository there.
snapshot=$(ls packaging/advisory-db/advisory-db-*.tar.gz)
[[ $(wc -l <<<"$snapshot") -eq 1 ]] || { echo "audit: expected one snapshot, got: $snapshot" >&2; exit 1; }
dbs=$(realpath -m "${CARGO_TARGET_DIR:-target}")/advisory-dbs
db=$dbs/advisory-db-3157b0e258782691
rm -rf "$dbs"
mkdir -p "$db"
tar -xzf "$snapshot" -C "$db"
git -C "$db" init -q
git -C "$db" add -A
git -C "$db" -c user.name=audit -c user.email=audit@localhost commit -qm "snapshot $(basename "$snapshot")"
echo "audit: advisory database $(basename "$snapshot"), $(find "$db/crates" -name '*.md' | wc -l) advisories"

XTM_ADVISORY_DBS=$dbs cargo deny --offline --locked check --show-stats
count() { # distinct crates (the root excluded) over the dependency kinds given
  cargo tree --locked --offline --target x86_64-unknown-linux-musl -e "$1" --prefix none |
    sed 's/ (\*)$//; s/ (proc-macro)$//' | grep -v '^xtm-composer ' | sort -u | wc -l
}
echo "audit: passed; crates: $(count normal) compiled into the binary, $(count normal,build,dev) with build and dev dependencies; $(( $(date +%s) - t0 )) s"
