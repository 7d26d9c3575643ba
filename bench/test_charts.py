#!/usr/bin/env python3
"""Tests of bench/charts.py and the raw-file reading in bench/report.py: python3 bench/test_charts.py

Each test writes a small results folder the way bench/run.sh and bench/envoy.sh do (wrk's own output format,
.cpu files, run.txt), draws the charts and checks what a reader would see: one bar per row, bar lengths in
proportion to the medians, the CPU per request written as ticks / CLK_TCK / requests.
"""
import math
import os
import statistics
import subprocess
import sys
import tempfile
import unittest
import xml.etree.ElementTree as ET

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import charts  # noqa: E402
import report  # noqa: E402

SVG = "{http://www.w3.org/2000/svg}"
CLK_TCK = 100
SECONDS = 3.0


# wrk 4.x's number formatting (units.c and print_units in wrk.c), so the files are byte for byte what it prints.
def wrk_units(value, scale, base, units):
    label = base
    for unit in units:
        if value < scale:
            break
        value /= scale
        label = unit
    return f"{value:.2f}{label}"


def wrk_time_us(micros):
    return wrk_units(micros, 1000, "us", ["ms", "s"])


def wrk_metric(value):
    return wrk_units(value, 1000, "", ["k", "M", "G"])


def wrk_binary(value):
    return wrk_units(value, 1024, "", ["K", "M", "G"])


def wrk_column(message, width):
    pad = 2 - (message[-1].isalpha()) - (message[-2].isalpha())
    return f"{message:>{width - pad}.{width - pad}}" + " " * pad


def wrk_output(rps, p50_us, p99_us, non2xx=0, socket_errors=None):
    requests = round(rps * SECONDS)
    lines = ["Running 3s test @ http://127.0.0.1:41234", "  1 threads and 50 connections",
             "  Thread Stats%6s%11s%8s%12s" % ("Avg", "Stdev", "Max", "+/- Stdev"),
             "    %-10s" % "Latency" + wrk_column(wrk_time_us(p50_us * 1.1), 8)
             + wrk_column(wrk_time_us(p50_us / 3), 10) + wrk_column(wrk_time_us(p99_us * 3), 9) + "%8.2f%%" % 85.3,
             "    %-10s" % "Req/Sec" + wrk_column(wrk_metric(rps), 8) + wrk_column(wrk_metric(rps / 20), 10)
             + wrk_column(wrk_metric(rps * 1.1), 9) + "%8.2f%%" % 71.0,
             "  Latency Distribution"]
    for percent, micros in ((50, p50_us), (75, p50_us * 1.3), (90, p50_us * 1.8), (99, p99_us)):
        lines.append("%7.0f%%" % percent + wrk_column(wrk_time_us(micros), 10))
    lines.append(f"  {requests} requests in {wrk_time_us(SECONDS * 1e6)}, {wrk_binary(requests * 230)}B read")
    if socket_errors:
        lines.append("  Socket errors: connect %d, read %d, write %d, timeout %d" % socket_errors)
    if non2xx:
        lines.append(f"  Non-2xx or 3xx responses: {non2xx}")
    lines.append("Requests/sec: %9.2f" % (requests / SECONDS))
    lines.append("Transfer/sec: %10sB" % wrk_binary(requests * 230 / SECONDS))
    return "\n".join(lines) + "\n", requests


def write_run(folder, rows, cpu=True, info=True):
    """rows: {(peer, mix): [(rps, p50 µs, p99 µs, {role: ticks used}), ...]}, one tuple per round. Returns
    {(peer, mix): [{role: expected µs per request}, ...]} and the requests per round."""
    os.makedirs(folder, exist_ok=True)
    expected, requests_of = {}, {}
    for (peer, mix), rounds in rows.items():
        for n, (rps, p50, p99, ticks) in enumerate(rounds):
            # As in a real run: the mixed set's invalid half is refused, and a socket error now and then.
            text, requests = wrk_output(rps, p50, p99, non2xx=round(rps * SECONDS) // 2 if mix == "mixed" else 0,
                                        socket_errors=(0, 3, 0, 1) if n == 1 and peer == "express-jwt" else None)
            base = os.path.join(folder, f"{peer}.{mix}.round{n}")
            with open(base + ".wrk", "w") as f:
                f.write(text)
            requests_of.setdefault((peer, mix), []).append(requests)
            if cpu:
                # Counters that started well above zero: only the difference may count.
                before = " ".join(f"{role}_ticks={1000 + i} {role}_switches={77 + i}" for i, role in enumerate(ticks))
                after = " ".join(f"{role}_ticks={1000 + i + used} {role}_switches={77 + i + requests // 2}"
                                 for i, (role, used) in enumerate(ticks.items()))
                with open(base + ".cpu", "w") as f:
                    f.write(f"clk_tck={CLK_TCK} before: {before} after: {after}\n")
            expected.setdefault((peer, mix), []).append(
                {role: used / CLK_TCK / requests * 1e6 for role, used in ticks.items()})
    if info:
        with open(os.path.join(folder, "run.txt"), "w") as f:
            f.write("date=2031-02-03\ncommand=bench/run.sh --quick\nmachine=2 cores, Test CPU & <friends>, Linux 9.9\n"
                    "rounds=3\nseconds=3\nconnections=50\nwrk=wrk debian/4.1.0-3+b2\n")
    return expected, requests_of


RUN_ROWS = {
    ("portcullis-middleware", "one"): [(36000, 1300, 3000, {"server": 280}), (41000, 1200, 2900, {"server": 290}),
                                       (39000, 1250, 3100, {"server": 285})],
    ("express-jwt", "one"): [(1100, 42000, 204000, {"server": 300}), (1000, 45000, 210000, {"server": 298}),
                             (1300, 40000, 190000, {"server": 301})],
    ("jwt-authorizer", "distinct"): [(9800, 5200, 10000, {"server": 297}), (9200, 5300, 11000, {"server": 296}),
                                     (9900, 5100, 9000, {"server": 299})],
    ("portcullis-middleware", "distinct"): [(14300, 3300, 9100, {"server": 291}),
                                            (12900, 3400, 9300, {"server": 292}),
                                            (15500, 3200, 8800, {"server": 290})],
    ("nginx-proxy", "one"): [(14000, 3250, 8160, {"server": 160, "upstream": 110}),
                             (17100, 3000, 8000, {"server": 170, "upstream": 120}),
                             (15900, 3100, 8300, {"server": 165, "upstream": 125})],
    ("gateway-proxy", "one"): [(10000, 4670, 12550, {"server": 210, "upstream": 80}),
                               (12700, 4500, 12000, {"server": 222, "upstream": 76}),
                               (10800, 4600, 13000, {"server": 205, "upstream": 79})],
    ("gateway-proxy", "mixed"): [(6500, 7230, 18700, {"server": 230, "upstream": 40}),
                                 (8900, 7000, 18000, {"server": 231, "upstream": 41}),
                                 (5700, 7500, 19000, {"server": 229, "upstream": 39})],
}

ENVOY_ROWS = {
    ("envoy-jwt-authn", "one"): [(11700, 3920, 16100, {"envoy": 230, "upstream": 60}),
                                 (12600, 3800, 15000, {"envoy": 240, "upstream": 62}),
                                 (10100, 4000, 17000, {"envoy": 235, "upstream": 58})],
    ("envoy-ext-authz", "one"): [(4700, 9870, 30010, {"envoy": 210, "portcullis": 50, "upstream": 35}),
                                 (5200, 9000, 29000, {"envoy": 215, "portcullis": 52, "upstream": 34}),
                                 (4200, 10000, 31000, {"envoy": 205, "portcullis": 49, "upstream": 36})],
    ("gateway-proxy", "one"): [(16300, 2550, 15900, {"portcullis": 200, "upstream": 95}),
                               (20400, 2400, 15000, {"portcullis": 210, "upstream": 100}),
                               (16000, 2600, 16000, {"portcullis": 205, "upstream": 98})],
}


def parse(path):
    root = ET.parse(path).getroot()
    assert root.tag == SVG + "svg", root.tag
    return root


def rows_of(root):
    return [g for g in root.iter(SVG + "g") if g.get("class") == "row"]


def cls(element, name):
    return [e for e in element.iter() if e.get("class") == name]


def all_text(root):
    return " ".join("".join(t.itertext()) for t in root.iter(SVG + "text"))


class Charts(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.results = os.path.join(self.tmp.name, "results")
        self.out = os.path.join(self.tmp.name, "charts")
        self.expected_cpu, self.requests = write_run(self.results, RUN_ROWS)
        self.paths = charts.draw_run(self.results, self.out)

    def tearDown(self):
        self.tmp.cleanup()

    def chart(self, name):
        path = os.path.join(self.out, name)
        self.assertIn(path, self.paths)
        return parse(path)

    def test_the_wrk_files_read_back_as_written(self):
        for (peer, mix), rounds in RUN_ROWS.items():
            for n, (rps, p50, p99, _) in enumerate(rounds):
                parsed = report.parse_wrk(os.path.join(self.results, f"{peer}.{mix}.round{n}.wrk"))
                self.assertEqual(parsed["requests"], round(rps * SECONDS))
                self.assertAlmostEqual(parsed["rps"], round(rps * SECONDS) / SECONDS, places=2)
                self.assertAlmostEqual(parsed["p50"], p50, delta=p50 * 0.005)
                self.assertAlmostEqual(parsed["p99"], p99, delta=p99 * 0.005)

    def test_every_chart_parses_with_a_white_background_title_and_the_runs_date_and_machine(self):
        self.assertEqual(sorted(os.path.basename(p) for p in self.paths),
                         ["cpu.svg", "latency.svg", "p3-cpu.svg", "requests.svg"])
        for path in self.paths:
            root = parse(path)
            width, height = float(root.get("width")), float(root.get("height"))
            background = [r for r in root.iter(SVG + "rect") if r.get("class") == "background"]
            self.assertEqual(len(background), 1, path)
            self.assertEqual(background[0].get("fill"), "#ffffff")
            self.assertEqual((float(background[0].get("width")), float(background[0].get("height"))), (width, height))
            self.assertTrue(cls(root, "title") and "".join(cls(root, "title")[0].itertext()).strip(), path)
            self.assertTrue(cls(root, "axis-label"), path)
            words = all_text(root)
            self.assertIn("2031-02-03", words, path)
            self.assertIn("2 cores, Test CPU & <friends>, Linux 9.9", words, path)

    def test_requests_chart_has_one_bar_per_row_in_proportion_to_the_medians(self):
        root = self.chart("requests.svg")
        rows = rows_of(root)
        self.assertEqual(sorted((g.get("data-peer"), g.get("data-mix")) for g in rows), sorted(RUN_ROWS))
        scale = None
        x0 = {float(r.get("x")) for g in rows for r in cls(g, "bar")}
        self.assertEqual(len(x0), 1, "every bar starts at the axis")
        x0 = x0.pop()
        for g in rows:
            key = (g.get("data-peer"), g.get("data-mix"))
            all_rps = [round(rps * SECONDS) / SECONDS for rps, *_ in RUN_ROWS[key]]
            median = statistics.median(all_rps)
            bars = cls(g, "bar")
            self.assertEqual(len(bars), 1, key)
            width = float(bars[0].get("width"))
            scale = scale or width / median
            self.assertAlmostEqual(width / median, scale, delta=scale * 2e-3, msg=key)
            ranges = cls(g, "range")
            self.assertEqual(len(ranges), 1, key)
            self.assertAlmostEqual(float(ranges[0].get("x1")) - x0, min(all_rps) * scale, delta=0.05, msg=key)
            self.assertAlmostEqual(float(ranges[0].get("x2")) - x0, max(all_rps) * scale, delta=0.05, msg=key)
            self.assertEqual("".join(cls(g, "value")[0].itertext()), f"{median:,.0f}/s")

    def test_portcullis_and_its_peers_are_coloured_apart(self):
        colour = {g.get("data-peer"): cls(g, "bar")[0].get("fill") for g in rows_of(self.chart("requests.svg"))}
        self.assertEqual(colour["portcullis-middleware"], colour["gateway-proxy"])
        self.assertEqual(colour["express-jwt"], colour["nginx-proxy"])
        self.assertEqual(colour["express-jwt"], colour["jwt-authorizer"])
        self.assertNotEqual(colour["portcullis-middleware"], colour["express-jwt"])

    def test_cpu_per_request_is_ticks_over_clk_tck_over_requests(self):
        root = self.chart("cpu.svg")
        rows = rows_of(root)
        wanted = sorted(key for key in RUN_ROWS if key[1] in ("one", "distinct"))
        self.assertEqual(sorted((g.get("data-peer"), g.get("data-mix")) for g in rows), wanted)
        for g in rows:
            key = (g.get("data-peer"), g.get("data-mix"))
            # The proxy's own process only: the upstream's ticks must not be in this bar.
            expected = statistics.median(r["server"] for r in self.expected_cpu[key])
            self.assertAlmostEqual(float(g.get("data-value")), expected, delta=expected * 1e-5, msg=key)
            self.assertEqual("".join(cls(g, "value")[0].itertext()), f"{expected:.1f} µs", key)
        # One of them by hand: gateway-proxy, repeated token, round 0 used 210 ticks for 30,000 requests.
        self.assertAlmostEqual(self.expected_cpu[("gateway-proxy", "one")][0]["server"], 210 / 100 / 30000 * 1e6)

    def test_p3_shows_both_proxies_and_their_upstream_apart_with_the_ratio(self):
        root = self.chart("p3-cpu.svg")
        rows = rows_of(root)
        seen = {}
        for g in rows:
            bars = cls(g, "bar")
            self.assertEqual(len(bars), 1)
            role, peer = bars[0].get("data-role"), g.get("data-peer")
            seen[(peer, role)] = float(g.get("data-value"))
        self.assertEqual(sorted(seen), sorted((p, r) for p in ("gateway-proxy", "nginx-proxy")
                                              for r in ("server", "upstream")))
        for (peer, role), value in seen.items():
            expected = statistics.median(r[role] for r in self.expected_cpu[(peer, "one")])
            self.assertAlmostEqual(value, expected, delta=expected * 1e-5, msg=(peer, role))
        ratio = statistics.median(g["server"] / n["server"] for g, n in
                                  zip(self.expected_cpu[("gateway-proxy", "one")],
                                      self.expected_cpu[("nginx-proxy", "one")]))
        self.assertIn(f"Gateway / nginx CPU per request: {ratio:.2f}", all_text(root))

    def test_latency_dots_sit_on_a_log_scale(self):
        root = self.chart("latency.svg")
        plot = cls(root, "plot")[0]
        self.assertEqual(plot.get("data-scale"), "log")  # 1.2 ms to 210 ms is more than 20 ×
        rows = rows_of(root)
        self.assertEqual(len(rows), len(RUN_ROWS))
        per_decade = None
        for g in rows:
            key = (g.get("data-peer"), g.get("data-mix"))
            p50 = statistics.median(p for _, p, _, _ in RUN_ROWS[key])
            p99 = statistics.median(p for _, _, p, _ in RUN_ROWS[key])
            # wrk prints two decimals: compare with what it printed, not with the exact input.
            p50 = report.micros(wrk_time_us(p50)) if p50 < 1000 else p50
            x50 = float(cls(g, "p50")[0].get("cx"))
            x99 = float(cls(g, "p99")[0].get("d").split()[1])
            self.assertGreater(x99, x50, key)
            slope = (x99 - x50) / math.log10(float(g.get("data-p99")) / float(g.get("data-p50")))
            per_decade = per_decade or slope
            self.assertAlmostEqual(slope, per_decade, delta=per_decade * 2e-3, msg=key)
            self.assertAlmostEqual(float(g.get("data-p50")), p50, delta=p50 * 0.005, msg=key)
            self.assertAlmostEqual(float(g.get("data-p99")), p99, delta=p99 * 0.005, msg=key)

    def test_report_reads_a_saved_folder_with_cpu_columns_and_p3_in_cpu(self):
        out = subprocess.run([sys.executable, os.path.join(HERE, "report.py"), self.results], check=True,
                             capture_output=True, text=True).stdout
        self.assertIn("# portcullis side by side — 2031-02-03", out)
        self.assertIn("Machine: 2 cores, Test CPU & <friends>, Linux 9.9. Command: `bench/run.sh --quick`", out)
        gw = statistics.median(r["server"] for r in self.expected_cpu[("gateway-proxy", "one")])
        up = statistics.median(r["upstream"] for r in self.expected_cpu[("gateway-proxy", "one")])
        line = next(l for l in out.splitlines() if l.startswith("| gateway-proxy | one |"))
        self.assertTrue(line.endswith(f"| {gw:.1f} | {up:.1f} |"), line)
        self.assertIn("| P3 (CPU) |", out)
        self.assertIn("| gateway-proxy | mixed | 6,500 | 6.5k / 8.9k / 5.7k | ", out)
        self.assertRegex(out, r"\| gateway-proxy \| mixed \|.*\| 50 % \| 0 \|")
        self.assertRegex(out, r"\| express-jwt \| one \|.*\| 0 % \| 4 \|")
        self.assertNotIn("| P1 |", out, "a run without the floor row has no P1")


class Folders(unittest.TestCase):
    def test_without_cpu_files_only_the_requests_and_latency_charts_are_drawn(self):
        with tempfile.TemporaryDirectory() as tmp:
            write_run(os.path.join(tmp, "r"), RUN_ROWS, cpu=False, info=False)
            paths = charts.draw_run(os.path.join(tmp, "r"), os.path.join(tmp, "c"))
            self.assertEqual(sorted(os.path.basename(p) for p in paths), ["latency.svg", "requests.svg"])
            self.assertIn("no run.txt: date and machine not recorded", all_text(parse(paths[0])))

    def test_envoy_cpu_is_stacked_by_process_and_sums_to_the_median_total(self):
        with tempfile.TemporaryDirectory() as tmp:
            results = os.path.join(tmp, "envoy-results")
            expected, _ = write_run(results, ENVOY_ROWS)
            paths = charts.draw_envoy(results, os.path.join(tmp, "c"), prefix="x")
            self.assertEqual(sorted(os.path.basename(p) for p in paths), ["x-envoy-cpu.svg", "x-envoy-requests.svg"])
            root = parse(os.path.join(tmp, "c", "x-envoy-cpu.svg"))
            rows = rows_of(root)
            self.assertEqual(sorted((g.get("data-peer"), g.get("data-mix")) for g in rows), sorted(ENVOY_ROWS))
            scale = None
            for g in rows:
                key = (g.get("data-peer"), g.get("data-mix"))
                total = statistics.median(sum(r.values()) for r in expected[key])
                bars = cls(g, "bar")
                self.assertEqual({b.get("data-role") for b in bars}, set(ENVOY_ROWS[key][0][3]), key)
                width = sum(float(b.get("width")) for b in bars)
                scale = scale or width / total
                self.assertAlmostEqual(width / total, scale, delta=scale * 2e-3, msg=key)
                self.assertEqual("".join(cls(g, "value")[0].itertext()), f"{total:.1f} µs")
            requests = parse(os.path.join(tmp, "c", "x-envoy-requests.svg"))
            self.assertEqual(len(rows_of(requests)), len(ENVOY_ROWS))
            self.assertIn("gateway reverse proxy", all_text(requests))


if __name__ == "__main__":
    unittest.main(verbosity=1)
