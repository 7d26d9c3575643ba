#!/usr/bin/env bash
# Counts instructions per verification under callgrind: full portcullis verification vs the bare aws-lc-rs
# signature check on the same token. Instruction counts repeat exactly on a shared, noisy machine, unlike
# wall-clock time. Needs valgrind (Debian: apt-get install valgrind).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p portcullis --example verify_loop
bin=target/release/examples/verify_loop
count() { # alg mode iterations -> total instructions
  valgrind --tool=callgrind --toggle-collect='*measured_loop*' --callgrind-out-file=/dev/null "$bin" "$1" "$2" "$3" 2>&1 |
    sed -n 's/.*Collected : \([0-9]*\).*/\1/p'
}
for alg in RS256 ES256; do
  for mode in bare full; do
    small=$(count "$alg" "$mode" 100)
    large=$(count "$alg" "$mode" 1100)
    per_op=$(( (large - small) / 1000 ))
    eval "${mode}=${per_op}"
  done
  python3 -c "b=$bare; f=$full; print(f'$alg: bare {b} instructions, portcullis {f} instructions, ratio {f/b:.3f} (+{f-b} per token)')"
done
