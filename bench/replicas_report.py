#!/usr/bin/env python3
"""Reads bench/replicas.sh's results and prints the four rows, the Redis / memory ratios and the store call's
latency (markdown).

Usage: replicas_report.py RESULTS_DIR ROUNDS SECONDS CONNS PROOFS_PER_RUN
Exits 1 when a run had a non-2xx answer or a socket error (a refused proof means the figures measure refusals), or
when a store call failed.
"""
import datetime
import os
import re
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from report import fmt_us, machine, parse_wrk  # noqa: E402

results, rounds, seconds, conns, per_run = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
ROWS = (
    ("bearer-memory", "Bearer, no store"),
    ("bearer-redis", "Bearer, Redis store"),
    ("dpop-memory", "DPoP, fresh proof, in-memory replay cache"),
    ("dpop-redis", "DPoP, fresh proof, Redis replay store (`SET NX PX`)"),
)


def parse(path):
    out = parse_wrk(path)
    m = re.search(r"api_cpu_ticks=(\d+) clk_tck=(\d+)", open(path).read())
    out["cpu_us"] = int(m.group(1)) * 1e6 / int(m.group(2)) / out["requests"] if m and out["requests"] else None
    return out


runs = {row: [parse(os.path.join(results, f"{row}.round{r}.wrk")) for r in range(rounds)] for row, _ in ROWS}
ok = True
print(f"# A replica with and without Redis — {datetime.date.today().isoformat()}\n")
print(f"Machine: {machine()}. `bench/replicas.sh`: {rounds} interleaved rounds of {seconds} s per row, wrk -t1 "
      f"-c{conns}, gateway on core 0, redis-server, issuer and load on core 1; up to {per_run} proofs per DPoP run.\n")
print("| row | requests/s (median) | rounds | gateway CPU per request (median) | p50 | p99 | non-2xx | errors |")
print("|---|---:|---|---:|---:|---:|---:|---:|")
for row, label in ROWS:
    values = runs[row]
    rps = statistics.median(v["rps"] for v in values)
    each = " / ".join(f"{v['rps'] / 1000:.1f}k" for v in values)
    p50 = statistics.median(v["p50"] or 0 for v in values)
    p99 = statistics.median(v["p99"] or 0 for v in values)
    non2xx = sum(v["non2xx"] for v in values)
    errors = sum(v["errors"] for v in values)
    ok &= non2xx == 0 and errors == 0
    cpu = [v["cpu_us"] for v in values if v["cpu_us"] is not None]
    cpu_text = f"{statistics.median(cpu):.1f} µs" if cpu else "-"
    print(f"| {label} | {rps:,.0f} | {each} | {cpu_text} | {fmt_us(p50)} | {fmt_us(p99)} | {non2xx} | {errors} |")
print()
for kind in ("bearer", "dpop"):
    memory, redis = runs[f"{kind}-memory"], runs[f"{kind}-redis"]
    ratios = [r["rps"] / m["rps"] for m, r in zip(memory, redis) if m["rps"] > 0]
    cpu = [r["cpu_us"] - m["cpu_us"] for m, r in zip(memory, redis) if m["cpu_us"] and r["cpu_us"]]
    cpu_text = f"{statistics.median(cpu):+.1f} µs" if cpu else "-"
    print(f"- {kind}: Redis / memory requests/s, median of the per-round ratios: "
          f"{statistics.median(ratios) if ratios else float('nan'):.2f}; gateway CPU per request, Redis minus "
          f"memory (median of the per-round differences): {cpu_text}.")
memory_file = os.path.join(results, "memory.txt")
if os.path.exists(memory_file):
    print(f"- After the runs: {' '.join(open(memory_file).read().split())}.")
print("\nThe store call alone (`store_latency`, on core 0 as a replica would be; redis-server on core 1):\n")
print("| op | concurrency | calls | errors | p50 | p90 | p99 | max |")
print("|---|---:|---:|---:|---:|---:|---:|---:|")
latency = os.path.join(results, "store_latency.txt")
for line in open(latency) if os.path.exists(latency) else []:
    fields = dict(word.split("=", 1) for word in line.split() if "=" in word)
    if "op" not in fields:
        continue
    ok &= fields.get("errors", "0") == "0"
    us = lambda key: fmt_us(float(fields[key])) if key in fields else "-"  # noqa: E731
    print(f"| {fields['op']} | {fields.get('concurrency', '-')} | {fields.get('calls', '-')} | "
          f"{fields.get('errors', '-')} | {us('p50_us')} | {us('p90_us')} | {us('p99_us')} | {us('max_us')} |")
if not ok:
    print("\n**Some runs answered non-2xx, had socket errors or failed store calls: the figures above are not valid.**")
sys.exit(0 if ok else 1)
