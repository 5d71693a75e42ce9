#!/usr/bin/env bash
# CI's release stage (called by .ci/run before `cargo test`): installs the build and test tools,
# builds and packages the three static targets, runs lintian on the .debs and checks the systemd
# unit. The integration tests then find the artifacts through PLANTWIRE_ARTIFACTS.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n== %s\n' "$*"; }
TARGET_DIR="${CARGO_TARGET_DIR:-target}"

log "release tools"
need=()
for pair in qemu-aarch64-static:qemu-user-static lintian:lintian ip:iproute2 readelf:binutils \
  file:file dpkg-deb:dpkg arm-linux-gnueabihf-gcc:gcc-arm-linux-gnueabihf fusermount3:fuse3; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || need+=("${pair##*:}")
done
[[ -e /usr/arm-linux-gnueabihf/lib/libc.a ]] || need+=(libc6-dev-armhf-cross)
if ((${#need[@]})); then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
python3 -c 'import zeroconf' 2>/dev/null || pip install -q zeroconf
packaging/build.sh --install-tools

for target in x86_64-unknown-linux-musl aarch64-unknown-linux-musl armv7-unknown-linux-gnueabihf; do
  log "build and package $target"
  start=$SECONDS
  packaging/build.sh "$target" --package
  echo "($((SECONDS - start)) s)"
done

log "lintian --fail-on error,warning"
for deb in "$TARGET_DIR"/dist/plantwire_*.deb; do
  echo "$deb"
  lintian --fail-on error,warning "$deb"
done

log "systemd unit"
packaging/check-unit.sh "$TARGET_DIR/x86_64-unknown-linux-musl/release/plantwire"

log "artifacts"
ls -l "$TARGET_DIR"/*/release/plantwire "$TARGET_DIR"/dist/
