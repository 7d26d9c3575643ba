#!/usr/bin/env bash
# The cost of a DPoP-bound request against a Bearer one: bench/dpop.sh [--quick]
#
# The quickstart API (examples/quickstart, DPoP "allowed", its own URL as public_url) runs pinned to core 0; the
# dev issuer, the proof maker and wrk run on core 1. Rows, interleaved in every round (wrk -t1 -c$CONNS):
#   bearer  the same Bearer token on every request (the verified-token cache answers after the first);
#   dpop    the same DPoP-bound token with a fresh proof on every request: each proof is verified (ES256
#           signature, htm, htu, iat, ath, thumbprint) and its jti enters the replay cache.
# The proofs are made by oauth4webapi (panva) right before each round (so every iat is well inside the API's
# 300 s window), each with its own jti; a proof sent twice would be refused, so every run must answer 0 non-2xx
# (checked by the report). All traffic stays on 127.0.0.1.
# Needs: cargo, wrk, node + npm, python3, taskset, curl.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
QUICK=0
[[ "${1:-}" == "--quick" ]] && QUICK=1
if (( QUICK )); then ROUNDS=3; DUR=2; else ROUNDS=5; DUR=3; fi
CONNS=${CONNS:-50}
# Proofs per DPoP run: above what one core verifies in $DUR seconds on this machine class, so none runs out.
PER_RUN=${PER_RUN:-50000}
OAUTH4WEBAPI_VERSION=3.8.8
WORK=$ROOT/bench/.work
RESULTS=$WORK/dpop-results
LOGS=$WORK/dpop-tmp
rm -rf "$RESULTS" "$LOGS"; mkdir -p "$RESULTS" "$LOGS"
export PATH="$HOME/.cargo/bin:$PATH"
source bench/lib.sh

require_tools cargo wrk node npm python3 taskset curl
# Only the measured server needs the release build; the issuer answers two token requests (debug build is fine).
echo "== building (quickstart: release; the issuer: debug)"
cargo build --release -q -p portcullis-quickstart
cargo build -q -p portcullis-cli
PORTCULLIS=$ROOT/target/debug/portcullis
QUICKSTART=$ROOT/target/release/quickstart

echo "== installing oauth4webapi@$OAUTH4WEBAPI_VERSION (npm, into $WORK/oauth4webapi)"
export OAUTH4WEBAPI_DIR=$WORK/oauth4webapi
mkdir -p "$OAUTH4WEBAPI_DIR"
npm install --silent --no-audit --no-fund --prefix "$OAUTH4WEBAPI_DIR" "oauth4webapi@$OAUTH4WEBAPI_VERSION"

trap cleanup EXIT
P=$(free_port)
taskset -c 1 "$PORTCULLIS" issuer --listen "127.0.0.1:$P" >"$LOGS/issuer.log" 2>&1 &
PIDS+=("$!"); wait_port "$P"
ISSUER_URL=http://127.0.0.1:$P/
P=$(free_port)
API=http://127.0.0.1:$P
start api env RUST_LOG=warn PORT="$P" ISSUER_BASE_URL="$ISSUER_URL" AUDIENCE="$AUDIENCE" DPOP=allowed PUBLIC_URL="$API" \
  "$QUICKSTART"
API_PID=$LAST_PID
# The API's CPU time so far (user + system, in clock ticks): read around each run, it gives the CPU per request,
# which a loaded machine disturbs far less than requests/s.
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$API_PID/stat"; }

echo "== warm-up: 1 s of Bearer requests"
export TOKEN_FILE BENCH_PATH=/api/protected
run() { # run ROW PROOFS_FILE OUT SECONDS
  local before; before=$(cpu_ticks)
  if [[ "$1" == dpop ]]; then
    TOKEN_FILE=$LOGS/dpop.txt PROOFS=$2 \
      taskset -c 1 wrk -t1 -c"$CONNS" -d"${4}s" --latency -s "$ROOT/bench/dpop.lua" "$API" >"$3"
  else
    TOKEN_FILE=$LOGS/bearer.txt taskset -c 1 wrk -t1 -c"$CONNS" -d"${4}s" --latency -s "$ROOT/bench/dpop.lua" "$API" >"$3"
  fi
  [[ "$3" == /dev/null ]] || echo "api_cpu_ticks=$(( $(cpu_ticks) - before )) clk_tck=$(getconf CLK_TCK)" >>"$3"
}

echo "== tokens by oauth4webapi: a Bearer one and one bound to its ES256 key"
taskset -c 1 node bench/dpop_tokens.mjs tokens "$ISSUER_URL" "$AUDIENCE" "$LOGS"
run bearer - /dev/null 1

echo "== $ROUNDS rounds of ${DUR} s per row (wrk -t1 -c$CONNS on core 1), $PER_RUN fresh proofs before each"
for round in $(seq 0 $((ROUNDS - 1))); do
  started=$(date +%s)
  taskset -c 1 node bench/dpop_tokens.mjs proofs "$API/api/protected" "$PER_RUN" "$LOGS" "$LOGS/proofs.txt"
  printf '  round %s  %s proofs made in %s s\n' "$round" "$PER_RUN" "$(( $(date +%s) - started ))"
  for row in bearer dpop; do
    out=$RESULTS/$row.round$round.wrk
    run "$row" "$LOGS/proofs.txt" "$out" "$DUR"
    printf '  round %s  %-7s %s\n' "$round" "$row" "$(grep 'Requests/sec' "$out")"
  done
done
echo "api_rss_kib=$(awk '/VmRSS/ { print $2 }' "/proc/$API_PID/status")" >"$RESULTS/memory.txt"
cleanup; PIDS=()
python3 bench/dpop_report.py "$RESULTS" "$ROUNDS" "$DUR" "$CONNS" "$PER_RUN" | tee "$RESULTS/report.md"
