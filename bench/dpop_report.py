#!/usr/bin/env python3
"""Reads bench/dpop.sh's results and prints the Bearer and DPoP rows and their ratio (markdown).

Usage: dpop_report.py RESULTS_DIR ROUNDS SECONDS CONNS PROOFS_PER_RUN
Exits 1 when a run had a non-2xx answer or a socket error: a refused proof means the figures measure refusals.
"""
import datetime
import os
import re
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from report import fmt_us, machine, parse_wrk  # noqa: E402

results, rounds, seconds, conns, per_run = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
def parse(path):
    out = parse_wrk(path)
    m = re.search(r"api_cpu_ticks=(\d+) clk_tck=(\d+)", open(path).read())
    out["cpu_us"] = int(m.group(1)) * 1e6 / int(m.group(2)) / out["requests"] if m and out["requests"] else None
    return out


runs = {row: [parse(os.path.join(results, f"{row}.round{r}.wrk")) for r in range(rounds)] for row in ("bearer", "dpop")}
ok = True
print(f"# DPoP against Bearer — {datetime.date.today().isoformat()}\n")
print(f"Machine: {machine()}. `bench/dpop.sh`: {rounds} interleaved rounds of {seconds} s per row, wrk -t1 -c{conns}, "
      f"API on core 0, issuer and load on core 1; up to {per_run} proofs per DPoP run.\n")
print("| row | requests/s (median) | rounds | API CPU per request (median) | p50 | p99 | non-2xx | errors |")
print("|---|---:|---|---:|---:|---:|---:|---:|")
for row, label in (("bearer", "Bearer, one token"), ("dpop", "DPoP, one bound token, a fresh proof per request")):
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
ratios = [d["rps"] / b["rps"] for b, d in zip(runs["bearer"], runs["dpop"]) if b["rps"] > 0]
per_request = [1e6 / d["rps"] - 1e6 / b["rps"] for b, d in zip(runs["bearer"], runs["dpop"]) if b["rps"] and d["rps"]]
cpu_added = [d["cpu_us"] - b["cpu_us"] for b, d in zip(runs["bearer"], runs["dpop"]) if b["cpu_us"] and d["cpu_us"]]
print(f"\nDPoP / Bearer requests/s, median of the per-round ratios: {statistics.median(ratios):.2f}; "
      f"1/rps difference (median): {statistics.median(per_request):.1f} µs; API CPU added per request "
      f"(median of the per-round differences): {statistics.median(cpu_added) if cpu_added else float('nan'):.1f} µs.")
if not ok:
    print("\n**Some runs answered non-2xx or had socket errors: the figures above are not valid.**")
sys.exit(0 if ok else 1)
