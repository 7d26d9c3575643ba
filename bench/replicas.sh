#!/usr/bin/env bash
# What a shared Redis costs a replica: bench/replicas.sh [--quick]
#
# Two `portcullis serve` gateways (release, reverse proxy, DPoP "allowed", one worker thread) run pinned to core 0,
# next to their upstream (bench/peers `ceiling`); only one is under load at a time. They differ in one table:
#   memory  no [store]: DPoP proofs recorded in the in-memory replay cache (one replica);
#   redis   [store] redis_url: every accepted proof is one `SET NX PX` at a local redis-server (Debian's, on core 1,
#           no persistence), revocations synchronized from it.
# The dev issuer, the proof maker (oauth4webapi, as bench/dpop.sh) and wrk run on core 1. Rows, interleaved in
# every round (wrk -t1 -c$CONNS): bearer-memory, dpop-memory, bearer-redis, dpop-redis; the same Bearer token on
# every Bearer request (the verified-token cache answers), a fresh proof on every DPoP request (made right before
# the round for that gateway's URL, each with its own jti). Every run must answer 0 non-2xx (checked by the report).
# Then portcullis-redis's store_latency example, on core 0 as a replica would be, measures the store call itself:
# p50/p90/p99/max of `first_use` and `revoke`, at concurrency 1 and 16.
# Needs: cargo, wrk, node + npm, python3, taskset, redis-server and redis-cli (Debian's redis-server package).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
QUICK=0
[[ "${1:-}" == "--quick" ]] && QUICK=1
if (( QUICK )); then ROUNDS=3; DUR=2; PER_RUN=${PER_RUN:-25000}; CALLS=5000; else ROUNDS=5; DUR=3; PER_RUN=${PER_RUN:-50000}; CALLS=20000; fi
CONNS=${CONNS:-50}
OAUTH4WEBAPI_VERSION=3.8.8
WORK=$ROOT/bench/.work
RESULTS=$WORK/replicas-results
LOGS=$WORK/replicas-tmp
rm -rf "$RESULTS" "$LOGS"; mkdir -p "$RESULTS" "$LOGS"
export PATH="$HOME/.cargo/bin:$PATH"
source bench/lib.sh

require_tools cargo wrk node npm python3 taskset redis-server redis-cli
build_release
cargo build --release -q -p portcullis-redis --example store_latency
STORE_LATENCY=$ROOT/target/release/examples/store_latency

echo "== installing oauth4webapi@$OAUTH4WEBAPI_VERSION (npm, into $WORK/oauth4webapi)"
export OAUTH4WEBAPI_DIR=$WORK/oauth4webapi
mkdir -p "$OAUTH4WEBAPI_DIR"
npm install --silent --no-audit --no-fund --prefix "$OAUTH4WEBAPI_DIR" "oauth4webapi@$OAUTH4WEBAPI_VERSION"

trap cleanup EXIT
REDIS_PORT=$(free_port)
mkdir -p "$LOGS/redis"
taskset -c 1 redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no --dir "$LOGS/redis" \
  >"$LOGS/redis.log" 2>&1 &
PIDS+=("$!"); wait_port "$REDIS_PORT"
P=$(free_port)
taskset -c 1 "$PORTCULLIS" issuer --listen "127.0.0.1:$P" >"$LOGS/issuer.log" 2>&1 &
PIDS+=("$!"); wait_port "$P"
ISSUER_URL=http://127.0.0.1:$P/
P=$(free_port); start upstream "$PEERS" ceiling "127.0.0.1:$P"

declare -A URL PID
for store in memory redis; do
  P=$(free_port)
  {
    printf 'listen = "127.0.0.1:%s"\nupstream = "http://127.0.0.1:%s"\n' "$P" "${PORT[upstream]}"
    printf 'public_url = "http://127.0.0.1:%s"\nworkers = 1\n\n[dpop]\nmode = "allowed"\n\n' "$P"
    [[ "$store" == redis ]] && printf '[store]\nredis_url = "redis://127.0.0.1:%s"\n\n' "$REDIS_PORT"
    printf '[[issuers]]\nissuer = "%s"\naudiences = ["%s"]\n\n[[routes]]\npath = "/api/*"\n' "$ISSUER_URL" "$AUDIENCE"
  } >"$LOGS/gateway-$store.toml"
  start "gateway-$store" env RUST_LOG=warn "$PORTCULLIS" serve --config "$LOGS/gateway-$store.toml"
  URL[$store]=http://127.0.0.1:$P
  PID[$store]=$LAST_PID
done
# A gateway's CPU time so far (user + system, in clock ticks).
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }

run() { # run ROW OUT SECONDS   (ROW = bearer-memory, dpop-redis, …)
  local kind=${1%%-*} store=${1#*-} before
  before=$(cpu_ticks "${PID[$store]}")
  if [[ "$kind" == dpop ]]; then
    TOKEN_FILE=$LOGS/dpop.txt PROOFS=$LOGS/proofs-$store.txt BENCH_PATH=/api/protected \
      taskset -c 1 wrk -t1 -c"$CONNS" -d"${3}s" --latency -s "$ROOT/bench/dpop.lua" "${URL[$store]}" >"$2"
  else
    TOKEN_FILE=$LOGS/bearer.txt BENCH_PATH=/api/protected \
      taskset -c 1 wrk -t1 -c"$CONNS" -d"${3}s" --latency -s "$ROOT/bench/dpop.lua" "${URL[$store]}" >"$2"
  fi
  [[ "$2" == /dev/null ]] || echo "api_cpu_ticks=$(( $(cpu_ticks "${PID[$store]}") - before )) clk_tck=$(getconf CLK_TCK)" >>"$2"
}

echo "== tokens by oauth4webapi: a Bearer one and one bound to its ES256 key"
taskset -c 1 node bench/dpop_tokens.mjs tokens "$ISSUER_URL" "$AUDIENCE" "$LOGS"
echo "== warm-up: 1 s of Bearer requests per gateway"
run bearer-memory /dev/null 1
run bearer-redis /dev/null 1

ROWS=(bearer-memory dpop-memory bearer-redis dpop-redis)
echo "== $ROUNDS rounds of ${DUR} s per row (wrk -t1 -c$CONNS on core 1), $PER_RUN fresh proofs per gateway before each"
for round in $(seq 0 $((ROUNDS - 1))); do
  started=$(date +%s)
  for store in memory redis; do
    taskset -c 1 node bench/dpop_tokens.mjs proofs "${URL[$store]}/api/protected" "$PER_RUN" "$LOGS" "$LOGS/proofs-$store.txt"
  done
  printf '  round %s  2 x %s proofs made in %s s\n' "$round" "$PER_RUN" "$(( $(date +%s) - started ))"
  for row in "${ROWS[@]}"; do
    out=$RESULTS/$row.round$round.wrk
    run "$row" "$out" "$DUR"
    printf '  round %s  %-13s %s\n' "$round" "$row" "$(grep 'Requests/sec' "$out")"
  done
done
for store in memory redis; do
  echo "$store rss_kib=$(awk '/VmRSS/ { print $2 }' "/proc/${PID[$store]}/status")" >>"$RESULTS/memory.txt"
done
echo "redis dbsize_after=$(redis-cli -p "$REDIS_PORT" DBSIZE)" >>"$RESULTS/memory.txt"

echo "== the store call: store_latency ($CALLS calls) on core 0, redis-server on core 1"
for concurrency in 1 16; do
  taskset -c 0 "$STORE_LATENCY" "redis://127.0.0.1:$REDIS_PORT" --calls "$CALLS" --concurrency "$concurrency" \
    | tee -a "$RESULTS/store_latency.txt"
done
cleanup; PIDS=()
python3 bench/replicas_report.py "$RESULTS" "$ROUNDS" "$DUR" "$CONNS" "$PER_RUN" | tee "$RESULTS/report.md"
