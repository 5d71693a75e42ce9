#!/usr/bin/env bash
# Builds one static release binary: packaging/build.sh <target> [--package]
#   x86_64-unknown-linux-musl | aarch64-unknown-linux-musl   cargo zigbuild (zig from PyPI's ziglang)
#   armv7-unknown-linux-gnueabihf                            Debian's gcc-arm-linux-gnueabihf, glibc linked statically
# With --package it also makes the .deb (cargo-deb) and the .tar.gz in target/dist/.
# `packaging/build.sh --install-tools` installs what the builds need (root, Debian 12).
set -euo pipefail
cd "$(dirname "$0")/.."

TARGET_DIR="${CARGO_TARGET_DIR:-target}"

install_tools() {
  local apt=()
  command -v arm-linux-gnueabihf-gcc >/dev/null 2>&1 || apt+=(gcc-arm-linux-gnueabihf libc6-dev-armhf-cross)
  command -v file >/dev/null 2>&1 || apt+=(file)
  command -v readelf >/dev/null 2>&1 || apt+=(binutils)
  if ((${#apt[@]})); then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${apt[@]}" >/dev/null
  fi
  rustup target add x86_64-unknown-linux-musl aarch64-unknown-linux-musl armv7-unknown-linux-gnueabihf >/dev/null
  python3 -m ziglang version >/dev/null 2>&1 || command -v zig >/dev/null 2>&1 || pip install -q ziglang
  command -v cargo-zigbuild >/dev/null 2>&1 || cargo install --locked -q cargo-zigbuild
  command -v cargo-deb >/dev/null 2>&1 || cargo install --locked -q cargo-deb
}

build() {
  local target=$1
  # AWS-LC seeds its random generator from getrandom(2) instead of also running its CPU-jitter
  # entropy source, whose one-time start costs ~40 ms of every start-up on a 2-core gateway
  # (docs/benchmarks.md, "Recovery after SIGKILL": start to READY=1).
  export AWS_LC_SYS_NO_JITTER_ENTROPY=1
  case "$target" in
    x86_64-unknown-linux-musl | aarch64-unknown-linux-musl)
      # Rust's musl targets link statically by default; zig provides the C compiler and linker
      # for aws-lc-sys and the final link.
      cargo zigbuild --release --locked --target "$target"
      ;;
    armv7-unknown-linux-gnueabihf)
      # No armv7 musl target here: link glibc statically (crt-static) with Debian's cross gcc.
      export CC_armv7_unknown_linux_gnueabihf=arm-linux-gnueabihf-gcc
      export AR_armv7_unknown_linux_gnueabihf=arm-linux-gnueabihf-ar
      export CARGO_TARGET_ARMV7_UNKNOWN_LINUX_GNUEABIHF_LINKER=arm-linux-gnueabihf-gcc
      export CARGO_TARGET_ARMV7_UNKNOWN_LINUX_GNUEABIHF_RUSTFLAGS="-C target-feature=+crt-static"
      cargo build --release --locked --target "$target"
      ;;
    *)
      echo "unknown target $target (x86_64-unknown-linux-musl, aarch64-unknown-linux-musl, armv7-unknown-linux-gnueabihf)" >&2
      exit 2
      ;;
  esac
  local bin="$TARGET_DIR/$target/release/plantwire"
  check_static "$bin"
  echo "built $bin ($(stat -c %s "$bin") bytes)"
}

# A static executable has no program interpreter and needs no shared library.
check_static() {
  local bin=$1 desc
  desc=$(file -b "$bin")
  echo "file: $desc"
  if readelf -lW "$bin" | grep -q 'INTERP' || readelf -dW "$bin" | grep -q 'NEEDED'; then
    echo "error: $bin is dynamically linked" >&2
    exit 1
  fi
  case "$desc" in
    *"statically linked"* | *"static-pie linked"*) ;;
    *) echo "error: file(1) does not call $bin static" >&2; exit 1 ;;
  esac
}

package() {
  local target=$1 version name dist stage
  version=$(cargo metadata --no-deps --format-version 1 | python3 -c 'import json,sys; print(json.load(sys.stdin)["packages"][0]["version"])')
  dist="$TARGET_DIR/dist"
  mkdir -p "$dist"
  # The .deb: cargo-deb takes the binary just built (already stripped by the release profile).
  local deb
  deb=$(cargo deb --no-build --no-strip --target "$target" --output "$dist/" | tail -n 1)
  fix_deb "$deb"
  # The tarball for other distributions.
  name="plantwire-$version-$target"
  stage=$(mktemp -d)
  mkdir "$stage/$name"
  install -m 0755 "$TARGET_DIR/$target/release/plantwire" "$stage/$name/plantwire"
  install -m 0644 systemd/plantwire.service packaging/plantwire.toml packaging/plantwire.1 README.md "$stage/$name/"
  tar -C "$stage" --owner=0 --group=0 --numeric-owner -czf "$dist/$name.tar.gz" "$name"
  rm -rf "$stage"
  echo "packaged $dist/$name.tar.gz"
}

# cargo-deb 3.8 writes "Depends:" even when a static binary depends on nothing, and names the
# changelog changelog.Debian.gz also in a native package; lintian rightly warns about both. The
# md5sums that dpkg --verify uses are added on the way.
fix_deb() {
  local deb=$1 tmp doc
  tmp=$(mktemp -d)
  dpkg-deb -R "$deb" "$tmp/pkg"
  sed -i '/^Depends: *$/d' "$tmp/pkg/DEBIAN/control"
  doc="usr/share/doc/plantwire"
  if [[ -e "$tmp/pkg/$doc/changelog.Debian.gz" ]]; then
    mv "$tmp/pkg/$doc/changelog.Debian.gz" "$tmp/pkg/$doc/changelog.gz"
  fi
  (cd "$tmp/pkg" && find . -type f ! -path './DEBIAN/*' -printf '%P\0' | sort -z | xargs -0 md5sum >DEBIAN/md5sums)
  SOURCE_DATE_EPOCH="${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}" \
    dpkg-deb --root-owner-group -Zxz -b "$tmp/pkg" "$deb" >/dev/null
  rm -rf "$tmp"
  echo "packaged $deb"
}

case "${1:-}" in
  --install-tools) install_tools ;;
  "" | -h | --help)
    sed -n '2,6p' "$0"
    exit 2
    ;;
  *)
    build "$1"
    if [[ "${2:-}" == "--package" ]]; then package "$1"; fi
    ;;
esac
