#!/usr/bin/env bash
# Checks systemd/plantwire.service: `systemd-analyze verify` must print nothing (it exits 0 on some
# errors, so its output is what counts) and `systemd-analyze security --offline=yes` must rate the
# exposure at 1.5 or lower. Usage: packaging/check-unit.sh PLANTWIRE_BINARY
# verify runs against a scratch root holding the host's units, the binary as /usr/bin/plantwire
# and kill, so ExecStart= and ExecReload= are checked against real executables.
set -euo pipefail
cd "$(dirname "$0")/.."

MAX_EXPOSURE=1.5
bin=${1:?usage: packaging/check-unit.sh PLANTWIRE_BINARY}
unit=systemd/plantwire.service

root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root/usr/bin" "$root/lib/systemd"
ln -s usr/bin "$root/bin"
cp -a /lib/systemd/system "$root/lib/systemd/"
install -m 0755 "$bin" "$root/usr/bin/plantwire"
install -m 0755 /usr/bin/kill "$root/usr/bin/kill"
install -m 0644 "$unit" "$root/lib/systemd/system/plantwire.service"

echo "== systemd-analyze verify"
# --man=no: man pages are looked up on the host, not in the root; the page itself is checked by
# lintian in the .deb.
out=$(systemd-analyze verify --man=no --root="$root" plantwire.service 2>&1) || {
  echo "$out"
  echo "error: systemd-analyze verify failed" >&2
  exit 1
}
if [[ -n "$out" ]]; then
  echo "$out"
  echo "error: systemd-analyze verify printed warnings" >&2
  exit 1
fi
echo "no warnings"

echo "== systemd-analyze security --offline=yes"
report=$(systemd-analyze security --offline=yes --no-pager "$unit" 2>&1 || true)
echo "$report" | grep -E '^✗' || true
exposure=$(echo "$report" | sed -n 's/.*Overall exposure level for plantwire.service: \([0-9.]*\).*/\1/p')
if [[ -z "$exposure" ]]; then
  echo "$report"
  echo "error: no exposure level in the report" >&2
  exit 1
fi
echo "exposure: $exposure (threshold $MAX_EXPOSURE)"
if ! awk -v e="$exposure" -v m="$MAX_EXPOSURE" 'BEGIN { exit !(e <= m) }'; then
  echo "error: exposure $exposure is above $MAX_EXPOSURE" >&2
  exit 1
fi
