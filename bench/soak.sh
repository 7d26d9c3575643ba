#!/usr/bin/env bash
# Hardening runs against the gateway (forward-auth mode, pinned to core 0; load from core 1):
#   1. flood: 60 s of invalid tokens (random kids, garbage) at full speed while two clients send valid tokens;
#   2. soak:  MINUTES (default 10) at 70 % of the measured peak with the mixed token set (half invalid), every
#             answer checked against its token, RSS sampled every 10 s;
#   3. slow:  10,000 slowloris connections for 60 s (re-opened whenever the gateway closes one) while valid
#             requests keep coming at a fixed rate.
# Usage: bench/soak.sh [--minutes M]. Prints one summary line per run; writes bench/.work/soak/.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
MINUTES=10
[[ "${1:-}" == "--minutes" ]] && MINUTES=$2
WORK=$ROOT/bench/.work/soak
rm -rf "$WORK"; mkdir -p "$WORK"
export PATH="$HOME/.cargo/bin:$PATH"
for tool in cargo wrk taskset curl python3; do
  command -v "$tool" >/dev/null || { echo "soak: $tool is missing"; exit 2; }
done
cargo build --release -q -p portcullis-cli
(cd bench/peers && cargo build --release -q)
PORTCULLIS=$ROOT/target/release/portcullis
PEERS=$ROOT/bench/peers/target/release/peers
TOKENS=$ROOT/bench/.work/soak-tokens
"$PEERS" setup "$TOKENS" --distinct 2000 --mixed 8000

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() {
  for _ in $(seq 1 400); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.05; done
  echo "soak: nothing listens on port $1"; return 1
}
PIDS=()
cleanup() { for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

JWKS_PORT=$(free_port)
taskset -c 1 "$PEERS" jwks "127.0.0.1:$JWKS_PORT" "$TOKENS" >"$WORK/jwks.log" 2>&1 &
PIDS+=("$!"); wait_port "$JWKS_PORT"
PORT=$(free_port); ADMIN=$(free_port)
cat >"$WORK/gateway.toml" <<TOML
forward_auth = "nginx"
[[issuers]]
issuer = "https://bench.portcullis.test/"
audiences = ["https://api.example.com"]
jwks_uri = "http://127.0.0.1:$JWKS_PORT/jwks.json"
[[routes]]
path = "/api/*"
[limits]
# Room for the 10,000 slow connections of run 3 plus the valid clients.
max_connections = 11000
TOML
RUST_LOG=warn taskset -c 0 "$PORTCULLIS" serve --config "$WORK/gateway.toml" --listen "127.0.0.1:$PORT" \
  --admin-listen "127.0.0.1:$ADMIN" >"$WORK/gateway.log" 2>&1 &
GATEWAY=$!; PIDS+=("$GATEWAY"); wait_port "$PORT"
URL=http://127.0.0.1:$PORT/auth
rss() { awk '/VmRSS/ { print $2 }' "/proc/$GATEWAY/status"; }
fetches() { curl -s "http://127.0.0.1:$JWKS_PORT/count"; }
echo "gateway pid $GATEWAY, rss_start_kib=$(rss)"

echo "== 1. flood: 60 s of invalid tokens with valid traffic alongside"
before=$(fetches)
taskset -c 1 "$PEERS" flood "$URL" "$TOKENS/tokens-distinct.txt" --seconds 60 --header "X-Original-Method: GET" --header "X-Original-URI: /api/x" \
  | tee "$WORK/flood.txt"
echo "jwks_fetches_during_flood=$(( $(fetches) - before )) (bucket: 10 + 10 per minute)" | tee -a "$WORK/flood.txt"

echo "== 2. soak: $MINUTES min at 70 % of peak, mixed tokens, every answer checked"
PEAK=$(cd "$ROOT" && TOKENS=$TOKENS/tokens-mixed.txt BENCH_PATH=/auth ORIGINAL_URI=/api/x \
  taskset -c 1 wrk -t1 -c50 -d5s -s bench/tokens.lua "$URL" | awk '/Requests\/sec/ { printf "%d", $2 }')
RATE=$((PEAK * 7 / 10))
echo "peak (mixed tokens) ${PEAK}/s, soak at ${RATE}/s"
( while kill -0 "$GATEWAY" 2>/dev/null; do echo "$(date +%s) $(rss)"; sleep 10; done ) >"$WORK/rss.txt" &
SAMPLER=$!
RSS_BEFORE=$(rss)
taskset -c 1 "$PEERS" rate "$URL" "$TOKENS/tokens-mixed.txt" --rps "$RATE" --seconds $((MINUTES * 60)) \
  --header "X-Original-Method: GET" --header "X-Original-URI: /api/x" --expect-mixed | tee "$WORK/soak.txt"
kill "$SAMPLER" 2>/dev/null || true
python3 - "$WORK/rss.txt" "$RSS_BEFORE" "$(rss)" <<'PY' | tee -a "$WORK/soak.txt"
import sys
samples = [int(line.split()[1]) for line in open(sys.argv[1]) if len(line.split()) == 2]
print(f"rss_before_kib={sys.argv[2]} rss_after_kib={sys.argv[3]} rss_min_kib={min(samples)} rss_max_kib={max(samples)} samples={len(samples)}")
PY

echo "== 3. slow: 10,000 slowloris connections for 60 s, valid requests at 1,000/s alongside"
RSS_BEFORE_SLOW=$(rss)
( while kill -0 "$GATEWAY" 2>/dev/null; do rss; sleep 2; done ) >"$WORK/rss-slow.txt" &
SAMPLER=$!
taskset -c 1 "$PEERS" slow "127.0.0.1:$PORT" --connections 10000 --seconds 60 >"$WORK/slow.txt" &
SLOW=$!
sleep 5   # let the slow connections open before measuring the valid traffic beside them
taskset -c 1 "$PEERS" rate "$URL" "$TOKENS/tokens-one.txt" --rps 1000 --seconds 50 --connections 8 \
  --header "X-Original-Method: GET" --header "X-Original-URI: /api/x" | tee "$WORK/slow-valid.txt"
wait "$SLOW"; cat "$WORK/slow.txt"
kill "$SAMPLER" 2>/dev/null || true
sleep 5   # the closed connections' memory goes back to the allocator
echo "rss_before_slow_kib=$RSS_BEFORE_SLOW rss_max_during_slow_kib=$(sort -n "$WORK/rss-slow.txt" | tail -1) rss_after_slow_kib=$(rss)"
