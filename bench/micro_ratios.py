#!/usr/bin/env python3
"""Prints portcullis_verify / bare_aws_lc_verify per algorithm from criterion's last run."""
import json
import pathlib
import sys

root = pathlib.Path(__file__).resolve().parent.parent / "target" / "criterion"
failed = False
for alg in ("RS256", "ES256"):
    def mean_ns(name):
        data = json.loads((root / alg / name / "new" / "estimates.json").read_text())
        return data["mean"]["point_estimate"], data["mean"]["confidence_interval"]
    bare, bare_ci = mean_ns("bare_aws_lc_verify")
    full, full_ci = mean_ns("portcullis_verify")
    ratio = full / bare
    print(f"{alg}: bare {bare / 1000:.2f} us, portcullis {full / 1000:.2f} us, ratio {ratio:.3f} "
          f"(overhead {(full - bare) / 1000:.2f} us); target <= 1.15")
    failed |= ratio > 1.15
sys.exit(1 if failed else 0)
