#!/usr/bin/env bash
# Event ingest over HTTPS against a real release server on loopback: closed-loop publishers
# (4, 64, 256) with a device token over HTTP/1.1 keep-alive and HTTP/2, events/s, p50/p99 and the
# server's CPU µs per event; then, in the same run, the NATS JetStream peer (benches/ingest-nats.sh).
# Usage: cargo build --release && benches/ingest.sh [extra `plantwire bench ingest` flags]
# CRED=cert publishes with a device certificate over mutual TLS on the device listener instead.
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
B="${PLANTWIRE_BIN:-$HERE/../target/release/plantwire}"
unset PLANTWIRE_BIN
D=$(mktemp -d /var/tmp/pwingest.XXXX)
PORT=18557
DPORT=18558
ulimit -n 8192
# 256 keep-alive publishers from one address need more than the default 64 per address; the one
# bench device publishes far past the default token bucket (100/s, burst 1,000), which would
# answer nearly every publish with 429; the device listener stays off the default port.
PLANTWIRE_SERVER__MAX_CONNECTIONS=4096 PLANTWIRE_SERVER__MAX_CONNECTIONS_PER_ADDRESS=4096 PLANTWIRE_DISCOVERY__ENABLED=false \
PLANTWIRE_EVENTS__RATE_PER_SEC=1000000 PLANTWIRE_EVENTS__BURST=1000000 PLANTWIRE_DEVICES__LISTEN=127.0.0.1:$DPORT \
  "$B" serve --state-dir "$D" --listen 127.0.0.1:$PORT 2>"$D/log" & PID=$!
trap 'kill -TERM $PID 2>/dev/null; wait $PID 2>/dev/null; rm -rf "$D"' EXIT
for _ in $(seq 1 100); do grep -q "listening" "$D/log" && break; sleep 0.1; done
if [ "${CRED:-token}" = cert ]; then
  "$B" --state-dir "$D" device add bench-1 --cert --out "$D" >/dev/null
  "$B" bench ingest --addr 127.0.0.1:$DPORT --ca "$D/tls/ca.crt" --cert "$D/bench-1.crt" \
    --key "$D/bench-1.key" --server-pid $PID "$@"
else
  "$B" --state-dir "$D" device add bench-1 | tail -n 1 > "$D/token"
  "$B" bench ingest --addr 127.0.0.1:$PORT --ca "$D/tls/ca.crt" --token-file "$D/token" \
    --server-pid $PID "$@"
fi
kill -TERM $PID; wait $PID 2>/dev/null || true
echo
"$HERE/ingest-nats.sh"
