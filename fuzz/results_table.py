#!/usr/bin/env python3
"""Prints the Markdown results table from fuzz/results.txt: per target, the runs summed (each run resumes from
the corpus the earlier ones grew) and the coverage, features and corpus of the latest run."""
import os

HERE = os.path.dirname(os.path.abspath(__file__))
targets = {}
for line in open(os.path.join(HERE, "results.txt")):
    fields = dict(word.split("=", 1) for word in line.split()[1:] if "=" in word)
    entry = targets.setdefault(fields["target"], {"runs": 0, "executions": 0, "seconds": 0, "crashes": 0})
    entry["runs"] += 1
    entry["executions"] += int(fields["executions"])
    entry["seconds"] += int(fields["seconds"])
    entry["crashes"] = max(entry["crashes"], int(fields["crashes"]))
    entry.update(latest=fields, date=line.split()[0])
print("| target | runs | executions | time | coverage (edges) | features | corpus | crashes | last run (UTC) |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---|")
for target, e in sorted(targets.items()):
    f = e["latest"]
    print(f"| `{target}` | {e['runs']} | {e['executions']:,} | {e['seconds'] / 60:.0f} min | {f['cov']} | {f['ft']} | "
          f"{f['corpus']} | {e['crashes']} | {e['date']} |")
