#!/usr/bin/env bash
# What N TLS connections held idle by one address (handshake done, nothing sent) do to /healthz
# from another address. Default caps, then with the per-address cap raised to the global cap, so
# that one address fills every slot and only the idlest-first eviction keeps the server reachable.
# Usage: cargo build --release && benches/held-connections.sh [N=1024]
set -u
N="${1:-1024}"
B="${PLANTWIRE_BIN:-$(dirname "$0")/../target/release/plantwire}"
unset PLANTWIRE_BIN
PORT=18556
ulimit -n 8192

run() { # $1 = label, rest = extra environment for the server
  local label=$1; shift
  D=$(mktemp -d /var/tmp/pwh.XXXX)
  env PLANTWIRE_DISCOVERY__ENABLED=false "$@" $B serve --state-dir $D --listen 127.0.0.1:$PORT 2>$D/log & PID=$!
  for i in $(seq 1 100); do grep -q "listening" $D/log && break; sleep 0.1; done
  # The holder: N handshakes from 127.0.0.2, then silence; it reports how many are still open.
  python3 - "$N" "$D/tls/ca.crt" $PORT > $D/holder 2>&1 <<'EOF' & HOLDER=$!
import select, socket, ssl, sys, time
n, ca, port = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
ctx = ssl.create_default_context(cafile=ca)
ctx.set_alpn_protocols(["h2", "http/1.1"])
held, failed = [], 0
t0 = time.time()
for _ in range(n):
    try:
        s = socket.create_connection(("127.0.0.1", port), source_address=("127.0.0.2", 0), timeout=5)
        held.append(ctx.wrap_socket(s, server_hostname="localhost"))
    except Exception:
        failed += 1
print(f"opened {len(held)} of {n} in {time.time() - t0:.1f} s ({failed} failed)", flush=True)
time.sleep(3)
def still_open():
    alive = 0
    for s in held:
        try:
            s.setblocking(False)
            alive += 1 if s.recv(1) else 0  # b"": closed cleanly
        except (ssl.SSLWantReadError, BlockingIOError):
            alive += 1  # nothing to read: still open
        except Exception:
            pass  # reset or EOF: closed
    return alive
print(f"held open after 3 s: {still_open()}", flush=True)
time.sleep(30)
print(f"held open after 33 s: {still_open()}", flush=True)
EOF
  until grep -q "held open after 3 s" $D/holder 2>/dev/null; do sleep 0.2; done
  ok=0; fail=0
  for i in $(seq 1 20); do
    c=$(curl -s -o /dev/null -w '%{http_code} %{time_total}' --interface 127.0.0.3 --max-time 5 \
      --cacert $D/tls/ca.crt https://127.0.0.1:$PORT/healthz)
    echo "$c" >> $D/times
    [ "${c%% *}" = 200 ] && ok=$((ok+1)) || fail=$((fail+1))
  done
  wait $HOLDER
  echo "== $label"
  cat $D/holder
  echo "/healthz from 127.0.0.3 while held: $ok of 20 answered 200"
  sort -k2 -n $D/times | awk '{a[NR]=$2} END {print "  time_total p50 " a[int(NR*0.5)] " s, max " a[NR] " s"}'
  echo "  server RSS: $(grep VmHWM /proc/$PID/status | tr -s ' ')"
  kill -TERM $PID; wait $PID; rm -rf $D
}

run "default caps (1024 total, 64 per address)"
run "one address may take every slot (per-address cap 1024)" PLANTWIRE_SERVER__MAX_CONNECTIONS_PER_ADDRESS=1024
