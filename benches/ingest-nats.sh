#!/usr/bin/env bash
# The peer of `plantwire bench ingest`: Debian's `nats-server -js` (JetStream, file storage, its
# default of no fsync per message) with the same closed-loop publisher counts, each publish waiting
# for its JetStream ack; events/s, p50/p99 and the server's CPU µs per message from /proc.
# Needs: apt-get install -y nats-server; pip install nats-py (the publisher, benches/ingest-nats.py).
# Usage: benches/ingest-nats.sh [COUNT] (default 20000 per run)
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
command -v nats-server >/dev/null || { echo "nats-server missing: apt-get install -y nats-server" >&2; exit 1; }
D=$(mktemp -d /var/tmp/pwnats.XXXX)
PORT=18558
nats-server -js -sd "$D" -a 127.0.0.1 -p $PORT 2>"$D/log" & PID=$!
trap 'kill -TERM $PID 2>/dev/null; wait $PID 2>/dev/null; rm -rf "$D"' EXIT
for _ in $(seq 1 100); do grep -q "Server is ready" "$D/log" && break; sleep 0.1; done
echo "$(nats-server --version), JetStream file store in $D"
python3 "$HERE/ingest-nats.py" --url nats://127.0.0.1:$PORT --server-pid $PID --count "${1:-20000}"
