#!/usr/bin/env bash
# Runs the fuzz targets: fuzz/run.sh [--seconds S] [--runs N] [--smoke] [TARGET...] (default: every target, 60 s
# each).
#
# A full run needs a nightly toolchain (AddressSanitizer) and cargo-fuzz (cargo install cargo-fuzz). Each target
# starts from its committed seeds (fuzz/seeds/TARGET) plus the working corpus (fuzz/corpus/TARGET, not committed);
# crashes land in fuzz/artifacts/TARGET. One line per target is appended to fuzz/results.txt: executions, coverage,
# features, corpus size and crashes.
#
# --smoke is the CI check: the default (stable) toolchain without a sanitizer, 20 s per target from the seeds only,
# nothing recorded; it fails if any target crashes.
set -euo pipefail
cd "$(dirname "$0")"
SECONDS_PER_TARGET=60
RUNS=-1
SMOKE=0
TARGETS=()
while (($#)); do
  case $1 in
    --seconds) SECONDS_PER_TARGET=$2; shift 2;;
    --runs) RUNS=$2; shift 2;;
    --smoke) SMOKE=1; SECONDS_PER_TARGET=20; shift;;
    *) TARGETS+=("$1"); shift;;
  esac
done
if ((SMOKE)); then
  FUZZ=(cargo fuzz)
  BUILD_FLAGS=(--sanitizer none)
else
  FUZZ=(cargo +nightly fuzz)
  BUILD_FLAGS=()
fi
if ! ((${#TARGETS[@]})); then
  listing=$("${FUZZ[@]}" list) || { echo "fuzz: \`${FUZZ[*]} list\` failed" >&2; exit 1; }
  mapfile -t TARGETS <<<"$listing"
fi
# Build every target first, so a build failure shows the compiler's own message (and the free disk space, the
# usual cause on a crowded machine) instead of an empty fuzzer log.
for target in "${TARGETS[@]}"; do
  if ! "${FUZZ[@]}" build "${BUILD_FLAGS[@]}" "$target"; then
    echo "fuzz: building $target failed; free space where it builds:" >&2
    df -h . >&2 || true
    exit 1
  fi
done
failed=0
for target in "${TARGETS[@]}"; do
  if ((SMOKE)); then
    corpus=$(mktemp -d)
    artifacts=$(mktemp -d)
  else
    corpus=corpus/$target
    artifacts=artifacts/$target
  fi
  mkdir -p "$corpus" "$artifacts"
  log=$(mktemp)
  status=0
  started=$(date +%s)
  "${FUZZ[@]}" run "${BUILD_FLAGS[@]}" "$target" "$corpus" "seeds/$target" -- \
    -max_total_time="$SECONDS_PER_TARGET" -runs="$RUNS" -print_final_stats=1 -rss_limit_mb=2048 \
    -artifact_prefix="$artifacts/" >"$log" 2>&1 || status=$?
  stat() { awk -v key="$1" '$1 == "stat::"key":" { print $2 }' "$log" | tail -1; }
  last=$(grep -E '^#[0-9]+' "$log" | tail -1 || true)
  cov=$(sed -nE 's/.* cov: ([0-9]+).*/\1/p' <<<"$last")
  ft=$(sed -nE 's/.* ft: ([0-9]+).*/\1/p' <<<"$last")
  crashes=$(find "$artifacts" -type f | wc -l)
  line="$(date -u +%FT%TZ) target=$target executions=$(stat number_of_executed_units) seconds=$(( $(date +%s) - started )) cov=${cov:-?} ft=${ft:-?} corpus=$(find "$corpus" -type f | wc -l) crashes=$crashes exit=$status"
  if ((SMOKE)); then
    echo "smoke: $line"
    rm -rf "$corpus"
  else
    echo "$line" | tee -a results.txt
  fi
  if ((status != 0 || crashes != 0)); then
    failed=1
    tail -40 "$log"
    ((SMOKE)) && echo "crash input kept in $artifacts"
  fi
  rm -f "$log"
done
exit "$failed"
