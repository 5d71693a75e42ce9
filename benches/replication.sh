#!/usr/bin/env bash
# Replication over a slow link: HQ and the edge as two real processes (`plantwire bench
# replication --hq-listen` and `--edge`) in two network namespaces joined by a veth pair, each
# end shaped by `tc tbf` (default 1 Mbit/s). Prints the edge's table and HQ's CPU per event.
# This kernel has no sch_netem, so no delay is added: the RTT is the veth's (well under 1 ms).
# For a delay, `plantwire bench replication --link 1mbit,100ms` runs both sides in one process
# through a userspace link emulator (src/bench/link.rs); this script stays the kernel-path figure.
# Root needed. Usage:
#   cargo build --release && sudo benches/replication.sh [extra edge flags, e.g. --events 20000]
#   RATE=none benches/replication.sh   # two processes, unshaped veth
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
B="${PLANTWIRE_BIN:-$HERE/../target/release/plantwire}"
RATE="${RATE:-1mbit}"
EVENTS="${EVENTS:-20000}"
ID="pwrb$$"
HQ_NS="${ID}h" EDGE_NS="${ID}e"
HQ_IP=10.251.0.1 EDGE_IP=10.251.0.2 PORT=9450
WORK="$(mktemp -d /var/tmp/pw-replbench.XXXXXX)"
HQ_PID=""

cleanup() {
  if [[ -n "$HQ_PID" ]]; then
    kill "$HQ_PID" 2>/dev/null || true
    wait "$HQ_PID" 2>/dev/null || true
  fi
  ip netns del "$HQ_NS" 2>/dev/null || true
  ip netns del "$EDGE_NS" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

ip netns add "$HQ_NS"
ip netns add "$EDGE_NS"
ip link add "$HQ_NS" type veth peer name "$EDGE_NS"
ip link set "$HQ_NS" netns "$HQ_NS"
ip link set "$EDGE_NS" netns "$EDGE_NS"
for side in "$HQ_NS:$HQ_IP" "$EDGE_NS:$EDGE_IP"; do
  ns="${side%%:*}" addr="${side#*:}"
  ip -n "$ns" addr add "$addr/24" dev "$ns"
  ip -n "$ns" link set lo up
  ip -n "$ns" link set "$ns" up
  if [[ "$RATE" != none ]]; then
    # Each direction leaves through one end's qdisc: shape both.
    ip netns exec "$ns" tc qdisc add dev "$ns" root tbf rate "$RATE" burst 32kbit latency 400ms
  fi
done

# USER_HZ is 100: utime + stime in ticks of 10 ms.
cpu_ms() { awk '{ sub(/^.*\) /, ""); print ($12 + $13) * 10 }' "/proc/$1/stat"; }

ip netns exec "$HQ_NS" "$B" bench replication --dir "$WORK" \
  --hq-listen "$HQ_IP:$PORT" --code-file "$WORK/code.txt" >"$WORK/hq.log" 2>&1 &
HQ_PID=$!
for _ in $(seq 1 300); do
  [[ -s "$WORK/code.txt" ]] && break
  kill -0 "$HQ_PID" 2>/dev/null || { cat "$WORK/hq.log"; exit 1; }
  sleep 0.2
done
[[ -s "$WORK/code.txt" ]] || { echo "HQ did not start"; cat "$WORK/hq.log"; exit 1; }

if [[ "$RATE" == none ]]; then
  echo "link: veth between two namespaces, unshaped"
else
  echo "link: veth between two namespaces, tc tbf rate $RATE burst 32kbit latency 400ms each way (no added delay: no netem)"
fi
before=$(cpu_ms "$HQ_PID")
ip netns exec "$EDGE_NS" "$B" bench replication --dir "$WORK" --edge \
  --code-file "$WORK/code.txt" --events "$EVENTS" "$@" 2>&1 | grep -v 'first admin' | tee "$WORK/edge.out"
after=$(cpu_ms "$HQ_PID")
n=$(awk '$1 == "link" { print $2 }' "$WORK/edge.out")
awk -v ms=$((after - before)) -v n="${n:-0}" 'BEGIN {
  printf "HQ process CPU over the run: %d ms, %.1f µs per replicated event (includes enrolment)\n", ms, (n > 0 ? ms * 1000 / n : 0) }'
