#!/usr/bin/env bash
# Alarm flood against a real release server on loopback: closed-loop device publishers raise
# alarms over HTTPS, a WebSocket on domain `alarms` times raise-to-visible, one bulk ack of 1,000
# is timed and the server's peak RSS sampled during the flood.
# Usage: cargo build --release && benches/alarms.sh [extra `plantwire bench alarms` flags]
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
B="${PLANTWIRE_BIN:-$HERE/../target/release/plantwire}"
unset PLANTWIRE_BIN
D=$(mktemp -d /var/tmp/pwalarms.XXXX)
PORT=18567
DPORT=18568
ulimit -n 8192
# The one bench device raises far past the default token bucket; the device listener stays off
# the default port.
PLANTWIRE_DISCOVERY__ENABLED=false PLANTWIRE_EVENTS__RATE_PER_SEC=1000000 PLANTWIRE_EVENTS__BURST=1000000 \
PLANTWIRE_DEVICES__LISTEN=127.0.0.1:$DPORT \
  "$B" serve --state-dir "$D" --listen 127.0.0.1:$PORT 2>"$D/log" & PID=$!
trap 'kill -TERM $PID 2>/dev/null; wait $PID 2>/dev/null; rm -rf "$D"' EXIT
for _ in $(seq 1 100); do grep -q "listening" "$D/log" && break; sleep 0.1; done
"$B" --state-dir "$D" device add bench-1 | tail -n 1 > "$D/token"
"$B" bench alarms --addr 127.0.0.1:$PORT --ca "$D/tls/ca.crt" --token-file "$D/token" \
  --admin-password-file "$D/initial-admin-password" --server-pid $PID "$@"
