#!/usr/bin/env bash
# Side-by-side benchmark of portcullis and its peers: bench/run.sh [--quick] [--only proxy] [--save DIR]
#
# Every server runs pinned to core 0 (taskset -c 0); the load (wrk, the fixed-rate, feed and flood tools) runs on
# core 1. Same route and JSON reply, RS256-2048, the same token sets for every peer. All servers start first; then
# rounds of short wrk runs go through every peer and token mix in turn, so machine drift hits every peer alike,
# and the median of the rounds is reported. Around every wrk run the server's CPU time (utime + stime from
# /proc/PID/stat) is read into a .cpu file next to the wrk output; for the two proxies their shared upstream is read
# too, as a role of its own. Prints the table and the ratios of targets P1-P6 from this one run.
#   --quick       3 rounds of 2 s and the smaller token sets
#   --only proxy  only the rows of P3: ceiling, nginx-proxy, gateway-proxy (one, distinct, mixed); no P4 or P6, no
#                 Node peers
#   --baseline BIN  also a row `gateway-baseline`: the same proxy configuration served by another portcullis binary
#                 (A/B of a data-path change)
#   --pingora BIN also a row `pingora-proxy`: bench/pingora's prototype with the same configuration
#   --save DIR    copy the run's raw files (wrk outputs, .cpu files, run.txt, P4/P6 files, report.md) to DIR,
#                 e.g. bench/runs/2026-12-01-proxy, which must not hold files yet
# Network traffic stays on 127.0.0.1. Needs: cargo, wrk, nginx, node + npm, python3, taskset, curl, ss.
set -euo pipefail
QUICK=0; ONLY=""; SAVE=""; BASELINE=""; PINGORA=""
usage() { echo "usage: bench/run.sh [--quick] [--only proxy] [--baseline BIN] [--pingora BIN] [--save DIR]"; exit 2; }
while (( $# )); do
  case $1 in
    --quick) QUICK=1 ;;
    --only) [[ "${2:-}" == proxy ]] || usage; ONLY=$2; shift ;;
    --save) [[ -n "${2:-}" ]] || usage; SAVE=$(realpath -m -- "$2"); shift ;;
    --baseline) [[ -x "${2:-}" ]] || usage; BASELINE=$(realpath -- "$2"); shift ;;
    --pingora) [[ -x "${2:-}" ]] || usage; PINGORA=$(realpath -- "$2"); shift ;;
    *) usage ;;
  esac
  shift
done
COMMAND=bench/run.sh
(( QUICK )) && COMMAND+=" --quick"
[[ -n "$ONLY" ]] && COMMAND+=" --only $ONLY"
[[ -n "$BASELINE" ]] && COMMAND+=" --baseline $BASELINE"
[[ -n "$PINGORA" ]] && COMMAND+=" --pingora $PINGORA"
if [[ -n "$SAVE" && -n "$(ls -A "$SAVE" 2>/dev/null)" ]]; then
  echo "bench: $SAVE is not empty; choose a new folder"; exit 2
fi
cd "$(dirname "$0")/.."
ROOT=$PWD
if (( QUICK )); then
  ROUNDS=3; DUR=2; RATE_SECS=5; FEED=100000; FLOOD_SECS=15
else
  ROUNDS=5; DUR=3; RATE_SECS=15; FEED=1000000; FLOOD_SECS=60
fi
CONNS=50
WORK=$ROOT/bench/.work
RESULTS=$WORK/results
LOGS=$WORK/tmp
rm -rf "$RESULTS" "$LOGS"; mkdir -p "$RESULTS" "$LOGS"
export PATH="$HOME/.cargo/bin:$PATH"
source bench/lib.sh

# wanted NAME: whether this run starts the server NAME (--only proxy: the P3 rows and their upstream).
wanted() {
  case $1 in
    gateway-baseline) [[ -n "$BASELINE" ]] ;;
    pingora-proxy) [[ -n "$PINGORA" ]] ;;
    *) [[ -z "$ONLY" || " ceiling upstream nginx-proxy gateway-proxy " == *" $1 "* ]] ;;
  esac
}

if [[ -z "$ONLY" ]]; then
  require_tools cargo wrk nginx node npm python3 taskset curl
  build_release portcullis-quickstart
  QUICKSTART=$ROOT/target/release/quickstart

  echo "== installing the Node peers (npm ci into $WORK/node)"
  mkdir -p "$WORK/node"
  cp bench/peers/node/package.json bench/peers/node/package-lock.json bench/peers/node/*.js "$WORK/node/"
  (cd "$WORK/node" && npm ci --silent --no-audit --no-fund)
else
  require_tools cargo wrk nginx python3 taskset curl
  build_release
fi

token_sets
trap cleanup EXIT
start_jwks

echo "== starting every server on core 0"
# PID_OF[NAME]: the server's own pid (start's LAST_PID: taskset and env exec it), checked against ss below.
declare -A PID_OF
P=$(free_port); start ceiling "$PEERS" ceiling "127.0.0.1:$P"; PID_OF[ceiling]=$LAST_PID
if wanted floor; then
  P=$(free_port); start floor "$PEERS" floor "127.0.0.1:$P" "$TOKENS"; PID_OF[floor]=$LAST_PID
  P=$(free_port); start jwt-authorizer "$PEERS" jwt-authorizer "127.0.0.1:$P" "$JWKS"; PID_OF[jwt-authorizer]=$LAST_PID
  P=$(free_port); start express-jwt env PORT="$P" JWKS_URI="$JWKS" ISSUER="$ISSUER" AUDIENCE="$AUDIENCE" \
    node "$WORK/node/express-jwt.js"
  PID_OF[express-jwt]=$LAST_PID
  P=$(free_port); start oauth2-jwt-bearer env PORT="$P" JWKS_URI="$JWKS" ISSUER="$ISSUER" AUDIENCE="$AUDIENCE" \
    node "$WORK/node/oauth2-jwt-bearer.js"
  PID_OF[oauth2-jwt-bearer]=$LAST_PID
  P=$(free_port); start portcullis-middleware env PORT="$P" JWKS_URI="$JWKS" ISSUER_BASE_URL="$ISSUER" \
    AUDIENCE="$AUDIENCE" "$QUICKSTART"
  PID_OF[portcullis-middleware]=$LAST_PID
fi
# The proxies' upstream shares core 0 with them: the server side is one core in every case.
P=$(free_port); start upstream "$PEERS" ceiling "127.0.0.1:$P"; PID_OF[upstream]=$LAST_PID
NGINX_DIR=$LOGS/nginx; mkdir -p "$NGINX_DIR"
NGINX_PORT=$(free_port)
cat >"$NGINX_DIR/nginx.conf" <<NGINX
worker_processes 1;
daemon off;
master_process off;
pid $NGINX_DIR/nginx.pid;
error_log $NGINX_DIR/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $NGINX_DIR/body;
  proxy_temp_path $NGINX_DIR/proxy;
  fastcgi_temp_path $NGINX_DIR/fastcgi;
  uwsgi_temp_path $NGINX_DIR/uwsgi;
  scgi_temp_path $NGINX_DIR/scgi;
  upstream api { server 127.0.0.1:${PORT[upstream]}; keepalive 64; }
  server {
    listen 127.0.0.1:$NGINX_PORT;
    location / {
      proxy_pass http://api;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
}
NGINX
P=$NGINX_PORT; PORT[nginx-proxy]=$P
taskset -c 0 nginx -p "$NGINX_DIR" -c "$NGINX_DIR/nginx.conf" >"$LOGS/nginx.log" 2>&1 &
PIDS+=("$!"); PID_OF[nginx-proxy]=$!; wait_port "$P"
for variant in "gateway-proxy proxy 1 jwks.json 1" "gateway-forward-auth forward_auth 1 jwks.json 1" \
  "routes-1000 forward_auth 1000 jwks.json 1" "keys-100 forward_auth 1 jwks-100.json 1" \
  "issuers-20 forward_auth 1 jwks.json 20"; do
  read -r name mode routes jwks_file issuers <<<"$variant"
  wanted "$name" || continue
  gateway_config "$LOGS/$name.toml" "$mode" "$routes" "$jwks_file" "$issuers"
  P=$(free_port); start "$name" env RUST_LOG=warn "$PORTCULLIS" serve --config "$LOGS/$name.toml" --listen "127.0.0.1:$P" \
    --admin-listen "127.0.0.1:$(free_port)"
  PID_OF[$name]=$LAST_PID
done

# The optional proxies compared with gateway-proxy: its configuration, served by another binary.
if wanted gateway-baseline; then
  P=$(free_port); start gateway-baseline env RUST_LOG=warn "$BASELINE" serve --config "$LOGS/gateway-proxy.toml" \
    --listen "127.0.0.1:$P" --admin-listen "127.0.0.1:$(free_port)"
  PID_OF[gateway-baseline]=$LAST_PID
fi
if wanted pingora-proxy; then
  P=$(free_port); start pingora-proxy env RUST_LOG=warn "$PINGORA" --config "$LOGS/gateway-proxy.toml" \
    --listen "127.0.0.1:$P" --threads 1
  PID_OF[pingora-proxy]=$LAST_PID
fi

# Whose CPU time each row reads, as role=PID[,PID...] words: `server` is the process(es) answering wrk (an nginx
# master and workers would all count; this one runs master_process off, a single process); the two proxies' shared
# upstream is read as its own role, `upstream`, and reported apart from the proxy's own CPU.
declare -A ROLES
for name in "${!PID_OF[@]}"; do
  pids=$(pid_tree "${PID_OF[$name]}")
  check_listener "$name" "$pids"
  ROLES[$name]="server=$pids"
done
ROLES[nginx-proxy]+=" upstream=$(pid_tree "${PID_OF[upstream]}")"
ROLES[gateway-proxy]+=" upstream=$(pid_tree "${PID_OF[upstream]}")"
for extra in gateway-baseline pingora-proxy; do
  wanted "$extra" && ROLES[$extra]+=" upstream=$(pid_tree "${PID_OF[upstream]}")"
done

# The runs: PEER MIX PATH [X-Original-URI]. Rows compared by a target run next to each other in every round.
RUNS=(
  "ceiling one /api/protected"
  "portcullis-middleware one /api/protected"
  "gateway-forward-auth one /auth /api/protected"
  "routes-1000 one /auth /api/protected"
  "floor distinct /api/protected"
  "portcullis-middleware distinct /api/protected"
  "gateway-forward-auth distinct /auth /api/protected"
  "routes-1000 distinct /auth /api/protected"
  "keys-100 distinct /auth /api/protected"
  "issuers-20 distinct /auth /api/protected"
  "nginx-proxy one /api/protected"
  "gateway-proxy one /api/protected"
  "gateway-baseline one /api/protected"
  "pingora-proxy one /api/protected"
  "gateway-proxy distinct /api/protected"
  "portcullis-middleware mixed /api/protected"
  "gateway-forward-auth mixed /auth /api/protected"
  "gateway-proxy mixed /api/protected"
  "jwt-authorizer one /api/protected" "jwt-authorizer distinct /api/protected" "jwt-authorizer mixed /api/protected"
  "express-jwt one /api/protected" "express-jwt distinct /api/protected" "express-jwt mixed /api/protected"
  "oauth2-jwt-bearer one /api/protected" "oauth2-jwt-bearer distinct /api/protected"
  "oauth2-jwt-bearer mixed /api/protected"
)
selected=()
for run in "${RUNS[@]}"; do wanted "${run%% *}" && selected+=("$run"); done
RUNS=("${selected[@]}")
run_info "$RESULTS/run.txt" "$COMMAND" "$ROUNDS" "$DUR"
echo "nginx=$(nginx -v 2>&1 | grep -o 'nginx/[^ ]*' || true)" >>"$RESULTS/run.txt"

echo "== warm-up: 1 s per server with the repeated token"
for run in "${RUNS[@]}"; do
  read -r peer mix path original <<<"$run"
  [[ "$mix" == one || "$peer" == floor ]] && wrk_run "$peer" one "$path" "${original:-}" 0 /dev/null 1
done

uptime >"$RESULTS/load.txt"
echo "== $ROUNDS rounds of ${DUR} s per peer and token mix (wrk -t1 -c$CONNS on core 1)"
for round in $(seq 0 $((ROUNDS - 1))); do
  for run in "${RUNS[@]}"; do
    read -r peer mix path original <<<"$run"
    # Each round starts in its own slice of the token set: a cached token is never seen again by the same server.
    case $mix in distinct) start_at=$((round * DISTINCT / ROUNDS));; mixed) start_at=$((round * MIXED / ROUNDS));; *) start_at=0;; esac
    out=$RESULTS/$peer.$mix.round$round
    measured_run "${ROLES[$peer]}" "$peer" "$mix" "$path" "${original:-}" "$start_at" "$out" "$DUR"
    printf '  round %s  %-22s %-9s %s\n' "$round" "$peer" "$mix" "$(grep 'Requests/sec' "$out.wrk")"
  done
done
uptime >>"$RESULTS/load.txt"

if [[ -n "$ONLY" ]]; then
  cleanup; PIDS=()
  echo
  python3 bench/report.py "$RESULTS" --quick "$QUICK" --rounds "$ROUNDS" --seconds "$DUR" | tee "$RESULTS/report.md"
  [[ -z "$SAVE" ]] || save_results "$RESULTS" "$SAVE"
  exit 0
fi

echo "== P4: fixed-rate latency at half of the forward-auth peak (${RATE_SECS} s each, alternating)"
PEAK=$(python3 bench/report.py --median-rps "$RESULTS" gateway-forward-auth one)
HALF=$((PEAK / 2))
# A fresh forward-auth gateway serves only these runs, so its own decision histogram (in-process, from the
# request's arrival in the handler to the decision) covers exactly them.
LATENCY_ADMIN=$(free_port)
P=$(free_port); start latency env RUST_LOG=warn "$PORTCULLIS" serve --config "$LOGS/gateway-forward-auth.toml" \
  --listen "127.0.0.1:$P" --admin-listen "127.0.0.1:$LATENCY_ADMIN"
for n in 1 2; do
  taskset -c 1 "$PEERS" rate "http://127.0.0.1:${PORT[ceiling]}/api/protected" "$TOKENS/tokens-one.txt" \
    --rps "$HALF" --seconds "$RATE_SECS" | tee "$RESULTS/ceiling.rate$n"
  taskset -c 1 "$PEERS" rate "http://127.0.0.1:${PORT[latency]}/auth" "$TOKENS/tokens-one.txt" \
    --rps "$HALF" --seconds "$RATE_SECS" --header "X-Original-Method: GET" --header "X-Original-URI: /api/protected" \
    | tee "$RESULTS/gateway-forward-auth.rate$n"
done
# The exporter's summaries roll over 60 s: the scrape covers both runs (and nothing else reached this gateway).
curl -s "http://127.0.0.1:$LATENCY_ADMIN/metrics" | python3 bench/report.py --decision-metrics | tee "$RESULTS/decision.txt"
cleanup; PIDS=()

echo "== P6: memory after $FEED distinct valid tokens, each sent twice (ES256, signed by the load tool), then a ${FLOOD_SECS} s flood"
start_jwks
gateway_config "$LOGS/memory.toml" forward_auth 1 jwks.json 1
P=$(free_port); start memory env RUST_LOG=warn "$PORTCULLIS" serve --config "$LOGS/memory.toml" --listen "127.0.0.1:$P" \
  --admin-listen "127.0.0.1:$(free_port)"
MEM_PID=$LAST_PID   # taskset and env exec the gateway: this is its pid
rss() { awk '/VmRSS/ { print $2 }' "/proc/$MEM_PID/status"; }
FA="http://127.0.0.1:${PORT[memory]}/auth"
echo "rss_start_kib=$(rss)" >"$RESULTS/memory.txt"
# Each token twice: the second verification admits it to the cache, so the cache's bound is what is measured.
taskset -c 1 "$PEERS" feed "$FA" "$TOKENS" --count "$FEED" --repeat 2 --header "X-Original-Method: GET" --header "X-Original-URI: /api/protected" \
  | tee -a "$RESULTS/memory.txt"
echo "rss_end_kib=$(rss)" | tee -a "$RESULTS/memory.txt"
BEFORE=$(curl -s "http://127.0.0.1:$JWKS_PORT/count")
taskset -c 1 "$PEERS" flood "$FA" "$TOKENS/tokens-distinct.txt" --seconds "$FLOOD_SECS" \
  --header "X-Original-Method: GET" --header "X-Original-URI: /api/protected" | tee "$RESULTS/flood.txt"
AFTER=$(curl -s "http://127.0.0.1:$JWKS_PORT/count")
echo "jwks_fetches_during_flood=$((AFTER - BEFORE)) flood_seconds=$FLOOD_SECS" | tee -a "$RESULTS/flood.txt"
echo "rss_after_flood_kib=$(rss)" | tee -a "$RESULTS/memory.txt"
cleanup; PIDS=()

echo
python3 bench/report.py "$RESULTS" --quick "$QUICK" --rounds "$ROUNDS" --seconds "$DUR" | tee "$RESULTS/report.md"
[[ -z "$SAVE" ]] || save_results "$RESULTS" "$SAVE"
