#!/usr/bin/env bash
# Release artefacts from ONE build, which is also the air-gapped build (docs/air-gapped.md):
#   1. network steps first: Debian tools, the musl target, `cargo vendor` into ./vendor;
#   2. the static release binaries for x86_64- and aarch64-unknown-linux-musl, one cargo
#      build --frozen (= --offline --locked) from ./vendor only, inside a network namespace
#      with no interface up (aarch64: Debian's cross gcc for ring's C parts);
#   3. from those binaries: dependency list, and per architecture a .deb (dpkg-deb), an .rpm
#      (rpmbuild), a FROM scratch image on the running dockerd and its `docker save`
#      tarball; SHA256SUMS.
# The checks are tests/packaging.rs (run by scripts/test.sh after this). Root, dockerd up.
# Usage: scripts/package.sh [--offline]      Output: ${CARGO_TARGET_DIR:-target}/dist/
#   --offline: inside an air-gapped site, skip step 1 (tools installed, ./vendor carried in).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never
t0=$(date +%s)
step() { echo "package: $* ($(( $(date +%s) - t0 )) s)"; }

TRIPLE=x86_64-unknown-linux-musl       # dist/xtm-composer, .deb amd64, .rpm x86_64, image VERSION
ARM_TRIPLE=aarch64-unknown-linux-musl  # dist/xtm-composer-aarch64, .deb arm64, .rpm aarch64, image VERSION-arm64
repo=$PWD
target_dir=$(realpath -m "${CARGO_TARGET_DIR:-target}")
dist=$target_dir/dist
vendor=$repo/vendor
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n1)
[[ $(id -u) -eq 0 ]] || { echo "scripts/package.sh: run as root (apt, image tree owners)" >&2; exit 1; }

# 1. Network steps. musl-tools: ring's C code needs a musl C compiler; rpm: rpmbuild;
#    gcc-aarch64-linux-gnu + libc6-dev-arm64-cross: ring's C parts for aarch64 (its C needs
#    only freestanding headers, and Rust links against its own self-contained musl).
if [[ ${1:-} == --offline ]]; then
  [[ -d $vendor ]] || { echo "scripts/package.sh --offline: no ./vendor (see docs/air-gapped.md)" >&2; exit 1; }
  step "offline: using ./vendor and the installed tools"
else
  need=()
  command -v musl-gcc >/dev/null || need+=(musl-tools)
  command -v rpmbuild >/dev/null || need+=(rpm)
  command -v aarch64-linux-gnu-gcc >/dev/null || need+=(gcc-aarch64-linux-gnu)
  [[ -d /usr/aarch64-linux-gnu/include ]] || need+=(libc6-dev-arm64-cross)
  # For tests/packaging.rs: the aarch64 binary's --version and check, emulated.
  command -v qemu-aarch64-static >/dev/null || need+=(qemu-user-static)
  command -v file >/dev/null || need+=(file)
  # For tests/packaging.rs: `systemd-analyze verify` also resolves the unit's man: link.
  command -v systemd-analyze >/dev/null || need+=(systemd)
  command -v man >/dev/null || need+=(man-db)
  command -v strace >/dev/null || need+=(strace)   # the unit's syscall filter against real calls
  [[ -f /etc/ssl/certs/ca-certificates.crt ]] || need+=(ca-certificates)
  if ((${#need[@]})); then
    DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null
  fi
  for t in "$TRIPLE" "$ARM_TRIPLE"; do
    rustup target list --installed | grep -qx "$t" || rustup target add "$t"
  done
  mkdir -p "$target_dir"
  cargo vendor --locked --versioned-dirs "$vendor" >"$target_dir/vendor.log" 2>&1 ||
    { cat "$target_dir/vendor.log" >&2; exit 1; }
  step "vendored $(ls "$vendor" | wc -l) crates into ./vendor"
fi

# 2. The offline build: vendored sources only, no network interface. Where unshare is
#    refused (an unprivileged container), --frozen alone still forbids any download.
offline=(--config 'source.crates-io.replace-with="vendored-sources"'
         --config "source.vendored-sources.directory=\"$vendor\"")
# Both targets in one invocation: build scripts and proc macros are built once, for the host.
export CC_aarch64_unknown_linux_musl=aarch64-linux-gnu-gcc AR_aarch64_unknown_linux_musl=aarch64-linux-gnu-ar
cross=(--config "target.$ARM_TRIPLE.linker=\"aarch64-linux-gnu-gcc\"")
# Size (issue 15, docs/benchmarks.md "Binary size"): scripts/no-unwind-tables.ld drops the unwind
# tables (~400 KB each; see its header for the cost); for the x86_64 static-pie,
# -z pack-relative-relocs stores its ~4,400 relative relocations as RELR (1.4 KB instead of 106 KB
# of RELA; the startup code of Rust's musl >= 1.2.4 applies them; still position-independent,
# ASLR unchanged). The aarch64 binary is static non-PIE (the target's default): no relocations.
no_unwind="\"-Clink-arg=-Wl,-T,$repo/scripts/no-unwind-tables.ld\""
lean=(--config "target.$TRIPLE.rustflags=[\"-Clink-arg=-Wl,-z,pack-relative-relocs\", $no_unwind]"
      --config "target.$ARM_TRIPLE.rustflags=[$no_unwind]")
build=(cargo build --release --frozen --target "$TRIPLE" --target "$ARM_TRIPLE" "${offline[@]}" "${cross[@]}" "${lean[@]}")
if unshare --net true 2>/dev/null; then
  netns="none (unshare --net)"
  unshare --net -- "${build[@]}"
else
  netns="host's (unshare refused; --frozen forbids downloads)"
  "${build[@]}"
fi
rm -rf "$dist"
mkdir -p "$dist"
cp "$target_dir/$TRIPLE/release/xtm-composer" "$dist/xtm-composer"
cp "$target_dir/$ARM_TRIPLE/release/xtm-composer" "$dist/xtm-composer-aarch64"
bin=$dist/xtm-composer
{
  echo "version: $version"
  echo "target: $TRIPLE (xtm-composer), $ARM_TRIPLE (xtm-composer-aarch64)"
  echo "command: ${build[*]}"
  echo "network during build: $netns"
  echo "rustc: $(rustc --version)"
} >"$dist/BUILD-INFO"
for b in "$bin" "$dist/xtm-composer-aarch64"; do
  step "offline musl build done; ${b##*/} $(stat -c %s "$b") bytes; $(file -b "$b" | grep -o 'static[-a-z]* linked')"
done
ldd "$bin" 2>&1 | sed 's/^/package: ldd: /' || true

# 3a. Dependency list shipped with every artefact: what is compiled into the binary.
{
  printf 'crate\tversion\tlicence\n'
  cargo tree --frozen --target "$TRIPLE" -e normal --prefix none "${offline[@]}" \
    -f '{p}|{l}' | sed 's/ (\*)$//; s/ (proc-macro)$//' | grep -v '^xtm-composer ' |
    sed -E 's/^([^ ]+) v([^ |]+)[^|]*\|(.*)$/\1\t\2\t\3/' | sort -u
} >"$dist/dependencies.tsv"
step "dependency list: $(($(wc -l <"$dist/dependencies.tsv") - 1)) crates compiled in"

# The unit's hardening figure (tests/packaging.rs asserts <= 2.0; printed here for the CI log).
systemd-analyze security --offline=true --no-pager packaging/xtm-composer.service |
  sed -n 's/^→ /package: systemd-analyze security: /p'

# Files common to both packages.
stage_common() { # $1 root, $2 env file destination
  local r=$1
  install -D -m0755 "$bin" "$r/usr/bin/xtm-composer"
  install -d -m0750 "$r/etc/xtm-composer"
  install -m0640 config/default.yaml "$r/etc/xtm-composer/default.yaml"
  install -D -m0600 packaging/xtm-composer.env "$r$2"
  install -D -m0644 packaging/xtm-composer.service "$r/usr/lib/systemd/system/xtm-composer.service"
  install -d -m0755 "$r/usr/share/man/man1" "$r/usr/share/doc/xtm-composer"
  sed "s/@VERSION@/$version/" packaging/xtm-composer.1 | gzip -9n >"$r/usr/share/man/man1/xtm-composer.1.gz"
  install -m0644 "$dist/dependencies.tsv" "$r/usr/share/doc/xtm-composer/dependencies.tsv"
  # The guides default.yaml and the man page point to (benchmarks are development figures).
  install -m0644 README.md docs/configuration.md docs/migrating.md docs/kubernetes.md \
    docs/portainer-swarm.md docs/air-gapped.md docs/packaging.md "$r/usr/share/doc/xtm-composer/"
}

# 3b-3d, once per architecture, from that architecture's binary.
for arch in x86_64 aarch64; do
  case $arch in
    x86_64) deb_arch=amd64 bin=$dist/xtm-composer image=xtm-composer:$version suffix= ;;
    aarch64) deb_arch=arm64 bin=$dist/xtm-composer-aarch64 image=xtm-composer:$version-arm64 suffix=-arm64 ;;
  esac
  # 3b. .deb with dpkg-deb (Debian's own tool, already installed: no cargo-deb to compile).
  deb_root=$dist/stage-deb-$arch
  stage_common "$deb_root" /etc/default/xtm-composer
  install -m0644 packaging/copyright "$deb_root/usr/share/doc/xtm-composer/copyright"
  gzip -9n <packaging/CHANGELOG.md >"$deb_root/usr/share/doc/xtm-composer/changelog.gz"
  install -d -m0755 "$deb_root/DEBIAN"
  install -m0755 packaging/deb/postinst packaging/deb/prerm packaging/deb/postrm "$deb_root/DEBIAN/"
  printf '/etc/default/xtm-composer\n/etc/xtm-composer/default.yaml\n' >"$deb_root/DEBIAN/conffiles"
  cat >"$deb_root/DEBIAN/control" <<EOF
Package: xtm-composer
Version: $version-1
Architecture: $deb_arch
Maintainer: XTM Composer maintainers <maintainers@xtm-composer.invalid>
Installed-Size: $(du -sk --exclude=DEBIAN "$deb_root" | cut -f1)
Depends: passwd
Recommends: docker.io | docker-ce
Section: admin
Priority: optional
Description: runs OpenCTI connectors and OpenAEV collectors/injectors as containers
 XTM Composer pulls connector, collector and injector definitions from OpenCTI and
 OpenAEV, runs each as a container on Docker, Portainer, Docker Swarm or Kubernetes,
 and reports status, health and logs back. A drop-in replacement for the existing
 composer (same configuration keys); the guides are in /usr/share/doc/xtm-composer.
 A single static binary with a hardened systemd unit (Type=notify).
EOF
  deb=$dist/xtm-composer_${version}-1_$deb_arch.deb
  dpkg-deb --root-owner-group -Zxz --build "$deb_root" "$deb" >/dev/null
  step ".deb $(stat -c %s "$deb") bytes"

  # 3c. .rpm with rpmbuild from Debian's rpm package, packaging the same staged files.
  rpm_root=$dist/stage-rpm-$arch
  stage_common "$rpm_root" /etc/sysconfig/xtm-composer
  install -m0644 packaging/CHANGELOG.md "$rpm_root/usr/share/doc/xtm-composer/CHANGELOG.md"
  install -D -m0644 LICENSE "$rpm_root/usr/share/licenses/xtm-composer/LICENSE"
  # --target sets the package's architecture (nothing is compiled: any host can do it).
  rpmbuild -bb --quiet --target "$arch-linux" \
    --define "_topdir $dist/rpmbuild" --define "_rpmdir $dist" \
    --define "_build_name_fmt %%{NAME}-%%{VERSION}-%%{RELEASE}.%%{ARCH}.rpm" \
    --define "stage $rpm_root" --define "pkgversion $version" \
    packaging/rpm/xtm-composer.spec >/dev/null
  rpm=$dist/xtm-composer-$version-1.$arch.rpm
  step ".rpm $(stat -c %s "$rpm") bytes"

  # 3d. FROM scratch image from the same binary: the tree is staged with exact owners and modes
  #     and ADDed as one tar (a scratch image has no shell to chmod with).
  ctx=$dist/image-$arch
  tree=$ctx/tree
  install -d -m0755 "$tree/etc/ssl/certs" "$tree/usr/local/bin"
  install -d -m0750 -o 0 -g 10001 "$tree/etc/xtm-composer"
  install -m0640 -o 0 -g 10001 config/default.yaml "$tree/etc/xtm-composer/default.yaml"
  install -m0644 packaging/image/passwd packaging/image/group "$tree/etc/"
  install -m0644 /etc/ssl/certs/ca-certificates.crt "$tree/etc/ssl/certs/ca-certificates.crt"
  install -m0755 "$bin" "$tree/usr/local/bin/xtm-composer"
  tar --numeric-owner --sort=name -C "$tree" -cf "$ctx/rootfs.tar" .
  cp packaging/Dockerfile "$ctx/Dockerfile"
  # The legacy builder: BuildKit's buildx plugin is not in Debian's docker.io 20.10.
  # --platform only labels the image (FROM scratch, nothing runs during the build).
  DOCKER_BUILDKIT=0 docker build --platform "linux/$deb_arch" -t "$image" "$ctx" >"$ctx/build.log" 2>&1 ||
    { cat "$ctx/build.log" >&2; exit 1; }
  saved=$dist/xtm-composer-image-$version$suffix.tar.gz
  docker save "$image" | gzip -6 >"$saved"
  step "image $image built; saved $(stat -c %s "$saved") bytes"
done

rm -rf "$dist/rpmbuild"
(cd "$dist" && sha256sum xtm-composer xtm-composer-aarch64 ./*.deb ./*.rpm ./*.tar.gz dependencies.tsv >SHA256SUMS)
step "artefacts in $dist"
