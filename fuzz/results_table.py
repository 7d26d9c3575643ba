#!/usr/bin/env python3
"""Prints the Markdown results table from fuzz/results.txt: the latest run of each target."""
import os

HERE = os.path.dirname(os.path.abspath(__file__))
latest = {}
for line in open(os.path.join(HERE, "results.txt")):
    fields = dict(word.split("=", 1) for word in line.split()[1:] if "=" in word)
    fields["date"] = line.split()[0]
    latest[fields["target"]] = fields
print("| target | executions | seconds | coverage (edges) | features | corpus | crashes | run at (UTC) |")
print("|---|---:|---:|---:|---:|---:|---:|---|")
for target, f in sorted(latest.items()):
    print(f"| `{target}` | {int(f['executions']):,} | {f['seconds']} | {f['cov']} | {f['ft']} | {f['corpus']} | "
          f"{f['crashes']} | {f['date']} |")
