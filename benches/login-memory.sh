#!/usr/bin/env bash
# Peak memory and latency of 100 simultaneous sign-ins with production argon2 parameters.
# Usage: cargo build --release && benches/login-memory.sh
set -u
B="${PLANTWIRE_BIN:-$(dirname "$0")/../target/release/plantwire}"
# Every other PLANTWIRE_* variable is server configuration, and unknown keys are refused.
unset PLANTWIRE_BIN
D=$(mktemp -d /var/tmp/pwm.XXXX)
OTP=$($B user add meter --role operator --state-dir $D 2>/dev/null | tail -1)
PLANTWIRE_DISCOVERY__ENABLED=false $B serve --state-dir $D --listen 127.0.0.1:18555 2>$D/log & PID=$!
for i in $(seq 1 50); do grep -q "listening" $D/log && break; sleep 0.1; done
sleep 0.5
echo "idle: $(grep -E 'VmRSS|VmHWM' /proc/$PID/status | tr -s ' ' | tr '\n' ' ')"
one() { curl -s -o /dev/null -w '%{time_total}\n' --cacert $D/tls/ca.crt https://127.0.0.1:18555/api/v1/auth/login -H 'content-type: application/json' -d "{\"username\":\"meter\",\"password\":\"$OTP\"}"; }
export -f one; export D OTP
echo "single login: $(one) s"
start=$(date +%s.%N)
seq 1 100 | xargs -P 100 -I{} bash -c one > $D/times
end=$(date +%s.%N)
sort -n $D/times | awk '{a[NR]=$1} END {print "100 parallel logins: p50 " a[int(NR*0.5)] " s, max " a[NR] " s"}'
echo "wall: $(echo "$end - $start" | bc) s"
echo "after: $(grep -E 'VmRSS|VmHWM' /proc/$PID/status | tr -s ' ' | tr '\n' ' ')"
kill -TERM $PID; wait $PID; rm -rf $D
