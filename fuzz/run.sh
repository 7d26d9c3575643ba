#!/usr/bin/env bash
# Runs the fuzz targets: fuzz/run.sh [--seconds S] [--runs N] [TARGET...] (default: every target, 60 s each).
# Needs a nightly toolchain and cargo-fuzz (cargo install cargo-fuzz). Each target starts from its committed seeds
# (fuzz/seeds/TARGET) plus the working corpus (fuzz/corpus/TARGET, not committed); crashes land in
# fuzz/artifacts/TARGET. One line per target is appended to fuzz/results.txt: executions, coverage, features,
# corpus size and crashes.
set -euo pipefail
cd "$(dirname "$0")"
SECONDS_PER_TARGET=60
RUNS=-1
TARGETS=()
while (($#)); do
  case $1 in
    --seconds) SECONDS_PER_TARGET=$2; shift 2;;
    --runs) RUNS=$2; shift 2;;
    *) TARGETS+=("$1"); shift;;
  esac
done
((${#TARGETS[@]})) || mapfile -t TARGETS < <(cargo +nightly fuzz list)
for target in "${TARGETS[@]}"; do
  mkdir -p "corpus/$target" "artifacts/$target"
  log=$(mktemp)
  status=0
  started=$(date +%s)
  cargo +nightly fuzz run "$target" "corpus/$target" "seeds/$target" -- \
    -max_total_time="$SECONDS_PER_TARGET" -runs="$RUNS" -print_final_stats=1 -rss_limit_mb=2048 >"$log" 2>&1 || status=$?
  stat() { awk -v key="$1" '$1 == "stat::"key":" { print $2 }' "$log" | tail -1; }
  last=$(grep -E '^#[0-9]+' "$log" | tail -1)
  cov=$(sed -nE 's/.* cov: ([0-9]+).*/\1/p' <<<"$last")
  ft=$(sed -nE 's/.* ft: ([0-9]+).*/\1/p' <<<"$last")
  crashes=$(find "artifacts/$target" -type f | wc -l)
  line="$(date -u +%FT%TZ) target=$target executions=$(stat number_of_executed_units) seconds=$(( $(date +%s) - started )) cov=${cov:-?} ft=${ft:-?} corpus=$(find "corpus/$target" -type f | wc -l) crashes=$crashes exit=$status"
  echo "$line" | tee -a results.txt
  if ((status != 0)); then tail -40 "$log"; fi
  rm -f "$log"
done
