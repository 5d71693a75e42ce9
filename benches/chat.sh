#!/usr/bin/env bash
# The chat fan-out workload against a real release server on loopback (over TLS):
# 20 users in one group on WebSockets, 4 closed-loop senders, 2,000 messages, then 1,000 idle sockets.
# Usage: cargo build --release && benches/chat.sh [extra `plantwire bench chat` flags]
# CLIENT_BIN runs the bench client from another binary (default: the server's), so an older server
# is measured with the current client. SERVER_CPUS and CLIENT_CPUS (taskset lists, e.g. 0 and 1)
# pin the two apart.
set -eu
B="${PLANTWIRE_BIN:-$(dirname "$0")/../target/release/plantwire}"
C="${CLIENT_BIN:-$B}"
# Every other PLANTWIRE_* variable is server configuration, and unknown keys are refused.
unset PLANTWIRE_BIN CLIENT_BIN
D=$(mktemp -d /var/tmp/pwchat.XXXX)
PORT=${PORT:-18556}
ulimit -n 8192
# 1,000 idle sockets over 20 users need more than the default 16 per user.
PLANTWIRE_CHAT__WS_MAX_PER_USER=64 PLANTWIRE_SERVER__MAX_CONNECTIONS=4096 PLANTWIRE_SERVER__MAX_CONNECTIONS_PER_ADDRESS=4096 PLANTWIRE_DISCOVERY__ENABLED=false \
  ${SERVER_CPUS:+taskset -c "$SERVER_CPUS"} $B serve --state-dir "$D" --listen 127.0.0.1:$PORT 2>"$D/log" & PID=$!
trap 'kill -TERM $PID 2>/dev/null; wait $PID 2>/dev/null; rm -rf "$D"' EXIT
for _ in $(seq 1 100); do grep -q "listening" "$D/log" && break; sleep 0.1; done
echo "server pid $PID; idle after start: $(grep -E 'VmRSS' /proc/$PID/status | tr -s ' ')"
${CLIENT_CPUS:+taskset -c "$CLIENT_CPUS"} $C bench chat --addr 127.0.0.1:$PORT --ca "$D/tls/ca.crt" \
  --admin-password-file "$D/initial-admin-password" \
  --server-pid $PID --fsync-dir "$D" --idle "${IDLE:-1000}" "$@"
