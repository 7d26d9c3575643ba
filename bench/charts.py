#!/usr/bin/env python3
"""SVG charts of a benchmark run, drawn from its raw files with Python 3's standard library alone.

Usage: charts.py OUTDIR [--run RESULTS_DIR] [--envoy ENVOY_RESULTS_DIR] [--prefix NAME]

--run reads a results folder of bench/run.sh (bench/.work/results, or one saved with --save under bench/runs/):
  requests.svg   requests/s per peer and token mix: the median of the rounds, a thin line from the lowest to the
                 highest round, the median written at the bar's end
  cpu.svg        CPU per request (µs) per peer, repeated token and distinct tokens (the proxies' own process only)
  p3-cpu.svg     P3: CPU per request of gateway-proxy and nginx-proxy side by side, each proxy alone, and their
                 shared upstream apart
  latency.svg    p50 and p99 per peer and token mix (wrk at full load), on a log scale when the range is wide
--envoy reads a results folder of bench/envoy.sh:
  envoy-requests.svg, envoy-cpu.svg (CPU per request stacked by process: Envoy, portcullis, the upstream)
--prefix NAME puts NAME- before every file name. A chart whose rows are missing is left out (a run without .cpu
files draws no CPU charts). Every chart carries the run's date, command and machine line from its run.txt.
"""
import math
import os
import statistics
import sys
from xml.sax.saxutils import escape, quoteattr

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import report  # noqa: E402  (bench/report.py: wrk and .cpu parsing, per-round ratios, run.txt)

WIDTH = 960
FONT = "Helvetica, Arial, sans-serif"
INK, MUTED, GRID, BACKGROUND = "#1a1a1a", "#5c5c5c", "#e2e2e2", "#ffffff"
# One colour family for portcullis, one for the software it is measured against, grey for the references that do
# no authorization at all (or only the bare signature check).
FAMILY_COLOUR = {"portcullis": "#2563a8", "peer": "#d4622a", "baseline": "#8f8f8f"}
FAMILY_LEGEND = [("portcullis", "portcullis"), ("peer", "other JWT verifiers and proxies"),
                 ("baseline", "references without authorization")]
ROLE_COLOUR = {"envoy": "#d4622a", "portcullis": "#2563a8", "upstream": "#b3b3b3"}
ROLE_LEGEND = [("envoy", "Envoy"), ("portcullis", "portcullis"), ("upstream", "the upstream (plain axum)")]

# Row name: (family, what it is).
PEERS = {
    "ceiling": ("baseline", "plain axum, no auth"),
    "floor": ("baseline", "axum + one bare RS256 check"),
    "portcullis-middleware": ("portcullis", "axum middleware"),
    "gateway-forward-auth": ("portcullis", "gateway, forward-auth"),
    "gateway-proxy": ("portcullis", "gateway, reverse proxy"),
    "routes-1000": ("portcullis", "forward-auth, 1,000 routes"),
    "keys-100": ("portcullis", "forward-auth, 100 keys"),
    "issuers-20": ("portcullis", "forward-auth, 20 issuers"),
    "jwt-authorizer": ("peer", "Rust, axum layer"),
    "express-jwt": ("peer", "Node, Express"),
    "oauth2-jwt-bearer": ("peer", "Node, Auth0's Express SDK"),
    "nginx-proxy": ("peer", "nginx proxy_pass, no auth"),
    "gateway-baseline": ("baseline", "gateway, reverse proxy, previous data path"),
    "pingora-proxy": ("baseline", "prototype: same decision on Pingora"),
    "envoy-jwt-authn": ("peer", "Envoy's jwt_authn filter"),
    "envoy-ext-authz": ("portcullis", "Envoy + portcullis, gRPC ext_authz"),
    "envoy-ext-authz-http": ("portcullis", "Envoy + portcullis, HTTP ext_authz"),
    "envoy-noauth": ("baseline", "Envoy, no auth"),
}
MIXES = [("one", "One token, repeated"), ("distinct", "Distinct tokens, each new to the server"),
         ("mixed", "Mixed: half valid and new, a quarter bad signature, a quarter wrong audience")]


def family(peer):
    if peer in PEERS:
        return PEERS[peer][0]
    return "portcullis" if "portcullis" in peer or peer.startswith("gateway") else "peer"


def text_width(text, size):
    """A generous estimate of the rendered width of sans-serif text: enough room, whatever font the viewer has."""
    return len(text) * size * 0.5


def wrap(content, size, width=WIDTH - 32):
    """Splits a line at spaces so that no piece is wider than width (by text_width's estimate)."""
    lines, line = [], ""
    for word in content.split(" "):
        candidate = f"{line} {word}" if line else word
        if line and text_width(candidate, size) > width:
            lines.append(line)
            line = word
        else:
            line = candidate
    return lines + [line] if line else lines


def fmt_rps(value):
    return f"{value:,.0f}/s"


def fmt_cpu(value):
    return f"{value:.1f} µs"


def fmt_time(micros):
    if micros >= 1000:
        ms = micros / 1000
        return f"{ms:.2f} ms" if ms < 10 else f"{ms:.1f} ms" if ms < 100 else f"{ms:.0f} ms"
    return f"{micros:.0f} µs"


def fmt_tick_time(micros):
    if micros >= 1_000_000:
        return f"{micros / 1_000_000:g} s"
    if micros >= 1000:
        return f"{micros / 1000:g} ms"
    return f"{micros:g} µs"


def fmt_tick_rps(value):
    return f"{value / 1000:g}k" if value >= 1000 else f"{value:g}"


def linear_ticks(top):
    """Round tick values from 0 to at least top (1, 2, 2.5 or 5 times a power of ten apart, about six ticks)."""
    if top <= 0:
        return [0, 1]
    raw = top / 6
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if raw <= m * magnitude)
    count = math.ceil(top / step - 1e-9)
    return [round(i * step, 10) for i in range(count + 1)]


def log_ticks(low, high):
    """Decade bounds around [low, high] and ticks at 1, 2 and 5 times each power of ten inside them."""
    lo = 10 ** math.floor(math.log10(low))
    hi = 10 ** math.ceil(math.log10(high))
    if hi <= lo:
        hi = lo * 10
    ticks, decade = [], lo
    while decade <= hi:
        ticks += [decade * m for m in (1, 2, 5) if decade * m <= hi]
        decade *= 10
    return lo, hi, ticks


class Scale:
    """Maps values to x positions between x0 and x1, linearly from 0 or logarithmically between two bounds."""

    def __init__(self, kind, low, high, x0, x1):
        self.kind, self.low, self.high, self.x0, self.x1 = kind, low, high, x0, x1

    def __call__(self, value):
        if self.kind == "log":
            share = (math.log10(value) - math.log10(self.low)) / (math.log10(self.high) - math.log10(self.low))
        else:
            share = value / self.high
        return self.x0 + share * (self.x1 - self.x0)


def text(x, y, content, size=12, fill=INK, anchor="start", weight=None, cls=None, halo=False):
    attrs = f' class="{cls}"' if cls else ""
    attrs += f' font-weight="{weight}"' if weight else ""
    # A white outline under the letters keeps a heading readable where it crosses a grid line.
    attrs += f' stroke="{BACKGROUND}" stroke-width="5" stroke-linejoin="round" paint-order="stroke"' if halo else ""
    attrs += f' text-anchor="{anchor}"' if anchor != "start" else ""
    return f'<text x="{x:.2f}" y="{y:.2f}" font-size="{size}" fill="{fill}"{attrs}>{escape(content)}</text>'


def footer_lines(info, results):
    """The run's date, command and machine, from its run.txt; said plainly when the folder has none."""
    if not info:
        return [f"Raw files: {os.path.basename(os.path.normpath(results))} (no run.txt: date and machine not "
                "recorded with them)"]
    rounds, seconds = info.get("rounds", "?"), info.get("seconds", "?")
    tools = ", ".join(info[key] for key in ("wrk", "nginx", "envoy") if info.get(key))
    first = (f"Run of {info.get('date', '?')}: `{info.get('command', '?')}`, {rounds} interleaved rounds of "
             f"{seconds} s per row, wrk -t1 -c{info.get('connections', '50')} on core 1, every server on core 0")
    return [first, f"Machine: {info.get('machine', '?')}" + (f"; {tools}" if tools else "")]


def chart(path, title, subtitles, legend, sections, axis, footer, draw_row):
    """Writes one horizontal chart: a title, subtitles, a legend, sections of labelled rows, an x axis and footer.

    sections: [(heading, [row])], each row a dict with peer, mix, label and note (the left column) and value_text
    (written right of the marks). axis: {"kind": "linear" | "log", "low", "high", "label", "tick"}; draw_row(row,
    scale, y) returns the row's marks."""
    rows = [row for _, section_rows in sections for row in section_rows]
    label_w = max(text_width(r["label"], 12) + 8 + text_width(r["note"], 11) for r in rows)
    value_w = max(text_width(r["value_text"], 11) for r in rows) + 24
    x0, x1 = 16 + max(label_w, 150) + 14, WIDTH - max(value_w, 80) - 10
    if axis["kind"] == "log":
        low, high, ticks = log_ticks(axis["low"], axis["high"])
    else:
        ticks = linear_ticks(axis["high"])
        low, high = 0, ticks[-1]
    scale = Scale(axis["kind"], low, high, x0, x1)

    body, y = [], 30
    body.append(text(16, y, title, size=17, weight="bold", cls="title"))
    for line in (piece for subtitle in subtitles for piece in wrap(subtitle, 12)):
        y += 18
        body.append(text(16, y, line, size=12, fill=MUTED, cls="subtitle"))
    y += 22
    lx = 16
    for colour, label in legend:
        body.append(f'<rect x="{lx}" y="{y - 10}" width="12" height="12" fill="{colour}"/>')
        body.append(text(lx + 17, y, label, size=12, cls="legend"))
        lx += 17 + text_width(label, 12) + 22
    y += 14
    plot_top = y
    marks = []
    for heading, section_rows in sections:
        y += 20
        marks.append(text(16, y, heading, size=12.5, weight="bold", cls="section", halo=True))
        y += 6
        for row in section_rows:
            centre = y + 10
            attrs = " ".join(f'data-{key}={quoteattr(str(value))}' for key, value in row.get("data", {}).items())
            marks.append(f'<g class="row" data-peer={quoteattr(row["peer"])} data-mix={quoteattr(row["mix"])} '
                         f'{attrs}>')
            marks.append(f'<title>{escape(row["tooltip"])}</title>')
            marks.append(f'<text x="16" y="{centre + 4:.2f}" font-size="12" fill="{INK}" class="label">'
                         f'{escape(row["label"])}<tspan fill="{MUTED}" font-size="11" dx="8">{escape(row["note"])}'
                         '</tspan></text>')
            marks.extend(draw_row(row, scale, centre))
            marks.append("</g>")
            y += 20
        y += 4
    plot_bottom = y + 4

    grid = []
    for tick in ticks:
        x = scale(tick)
        grid.append(f'<line x1="{x:.2f}" y1="{plot_top}" x2="{x:.2f}" y2="{plot_bottom}" stroke="{GRID}" '
                    'stroke-width="1"/>')
        grid.append(text(x, plot_bottom + 15, axis["tick"](tick), size=11, fill=MUTED, anchor="middle", cls="tick"))
    grid.append(f'<line x1="{x0:.2f}" y1="{plot_bottom}" x2="{x1:.2f}" y2="{plot_bottom}" stroke="{MUTED}" '
                'stroke-width="1"/>')
    y = plot_bottom + 34
    grid.append(text((x0 + x1) / 2, y, axis["label"], size=12, anchor="middle", cls="axis-label"))
    for line in (piece for line in footer for piece in wrap(line, 10.5)):
        y += 16
        grid.append(text(16, y, line, size=10.5, fill=MUTED, cls="footer"))
    height = y + 14

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height:.0f}" '
           f'viewBox="0 0 {WIDTH} {height:.0f}" font-family="{FONT}" role="img">',
           f'<title>{escape(title)}</title>',
           # An explicit background: GitHub's dark mode shows an SVG's transparent parts dark.
           f'<rect class="background" x="0" y="0" width="{WIDTH}" height="{height:.0f}" fill="{BACKGROUND}"/>',
           f'<g class="plot" data-scale="{axis["kind"]}" data-x0="{x0:.2f}" data-x1="{x1:.2f}" '
           f'data-low="{low:g}" data-high="{high:g}">']
    out += grid + marks + ["</g>"] + body + ["</svg>"]
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")
    return path


def bar_marks(row, scale, centre):
    """Stacked segments from 0 (one segment for a plain bar), the rounds' range as a thin line with end ticks, and
    the value at the end."""
    marks, start = [], 0.0
    for role, value, colour in row["segments"]:
        x, width = scale(start), scale(start + value) - scale(start)
        marks.append(f'<rect class="bar" data-role="{role}" data-value="{value:.6g}" x="{x:.2f}" y="{centre - 7:.2f}" '
                     f'width="{width:.2f}" height="14" fill="{colour}"/>')
        start += value
    end = scale(start)
    if row.get("range"):
        lo, hi = (scale(v) for v in row["range"])
        marks.append(f'<line class="range" x1="{lo:.2f}" y1="{centre:.2f}" x2="{hi:.2f}" y2="{centre:.2f}" '
                     f'stroke="{INK}" stroke-width="1.2"/>')
        for x in (lo, hi):
            marks.append(f'<line class="range-end" x1="{x:.2f}" y1="{centre - 4:.2f}" x2="{x:.2f}" '
                         f'y2="{centre + 4:.2f}" stroke="{INK}" stroke-width="1.2"/>')
        end = max(end, hi)
    marks.append(text(end + 6, centre + 4, row["value_text"], size=11, cls="value"))
    return marks


def latency_marks(row, scale, centre):
    """A whisker from p50 to p99, a dot at p50 and a diamond at p99."""
    a, b = scale(row["p50"]), scale(row["p99"])
    colour = FAMILY_COLOUR[family(row["peer"])]
    return [f'<line class="whisker" x1="{a:.2f}" y1="{centre:.2f}" x2="{b:.2f}" y2="{centre:.2f}" '
            f'stroke="{colour}" stroke-width="2"/>',
            f'<circle class="p50" data-value="{row["p50"]:.6g}" cx="{a:.2f}" cy="{centre:.2f}" r="4.5" '
            f'fill="{colour}"/>',
            f'<path class="p99" data-value="{row["p99"]:.6g}" d="M {b:.2f} {centre - 6:.2f} L {b + 6:.2f} '
            f'{centre:.2f} L {b:.2f} {centre + 6:.2f} L {b - 6:.2f} {centre:.2f} Z" fill="{BACKGROUND}" '
            f'stroke="{colour}" stroke-width="2"/>',
            text(max(a, b) + 12, centre + 4, row["value_text"], size=11, cls="value")]


def label_of(peer):
    return peer, PEERS.get(peer, ("", ""))[1]


def by_mix(keys, mixes):
    """Sections in the MIXES order, for the mixes present and wanted."""
    return [(mix, heading) for mix, heading in MIXES if mix in mixes and any(k[1] == mix for k in keys)]


def ratio_note(results, runs, a, b, name):
    """"R × name" with R the median of the per-round ratios of a's and b's requests/s, or None."""
    if a in runs and b in runs:
        value = report.round_ratio(results, a, b)
        if not math.isnan(value):
            return f"{value:.1f} × {name}" if value >= 10 else f"{value:.2f} × {name}"
    return None


def requests_chart(path, results, runs, info, title, rounds_note):
    sections = []
    for mix, heading in by_mix(runs, ("one", "distinct", "mixed")):
        rows = []
        for (peer, m), r in runs.items():
            if m != mix:
                continue
            name, note = label_of(peer)
            spread = (min(r["all_rps"]), max(r["all_rps"]))
            rows.append({"peer": peer, "mix": mix, "label": name, "note": note, "value": r["rps"],
                         "segments": [("server", r["rps"], FAMILY_COLOUR[family(peer)])], "range": spread,
                         "value_text": fmt_rps(r["rps"]), "data": {"value": f"{r['rps']:.6g}"},
                         "tooltip": f"{peer}, {mix}: {fmt_rps(r['rps'])} (median; rounds "
                                    f"{', '.join(f'{v:,.0f}' for v in r['all_rps'])})"})
        rows.sort(key=lambda row: -row["value"])
        sections.append((heading, rows))
    top = max(max(r["all_rps"]) for r in runs.values())
    subtitles = [f"Higher is better. Bars: median of the rounds; thin line: the lowest to the highest round. "
                 f"{rounds_note}"]
    comparisons = (("portcullis middleware", "portcullis-middleware", ["express-jwt", "oauth2-jwt-bearer",
                                                                     "jwt-authorizer"]),
                   ("gateway reverse proxy", "gateway-proxy", ["nginx-proxy", "envoy-jwt-authn"]),
                   ("Envoy + portcullis ext_authz", "envoy-ext-authz", ["envoy-jwt-authn"]))
    names = {"nginx-proxy": "nginx proxy_pass (no auth)", "envoy-jwt-authn": "Envoy jwt_authn"}
    for mix, label in (("one", "Repeated token"), ("distinct", "Distinct tokens")):
        parts = []
        for subject, row, others in comparisons:
            factors = [ratio_note(results, runs, (row, mix), (other, mix), names.get(other, other))
                       for other in others]
            factors = [f for f in factors if f]
            if factors:
                parts.append(f"{subject} {', '.join(factors)}")
        if parts:
            subtitles.append(f"{label} (medians of per-round ratios): " + "; ".join(parts) + ".")
    legend = [(FAMILY_COLOUR[key], label) for key, label in FAMILY_LEGEND
              if any(family(peer) == key for peer, _ in runs)]
    axis = {"kind": "linear", "high": top, "tick": fmt_tick_rps,
            "label": "requests per second (wrk -t1 -c50; the servers of each row on one core)"}
    return chart(path, title, subtitles, legend, sections, axis, footer_lines(info, results), bar_marks)


def cpu_rows(results, keys, mix, roles):
    """Rows of CPU per request (µs, median of the rounds) for the given mix, stacked over roles: (role, colour)."""
    rows = []
    for peer, m in keys:
        if m != mix:
            continue
        rounds = report.cpu_rounds(results, peer, mix)
        if not rounds:
            continue
        segments, totals = [], [0.0] * len(rounds)
        for role, colour in roles:
            values = [r.get(role) for r in rounds]
            if all(v is None for v in values):
                continue
            values = [v or 0.0 for v in values]
            totals = [t + v for t, v in zip(totals, values)]
            segments.append((role, statistics.median(values), colour or FAMILY_COLOUR[family(peer)]))
        if not segments:
            continue
        total = statistics.median(totals)
        name, note = label_of(peer)
        # Stacked segments are each role's median; the bar's length is the median of the rounds' totals, so the
        # last segment absorbs the (small) difference and the written value is exactly that median.
        if len(segments) > 1:
            role, _, colour = segments[-1]
            segments[-1] = (role, total - sum(v for _, v, _ in segments[:-1]), colour)
        parts = ", ".join(f"{role} {fmt_cpu(v)}" for role, v, _ in segments)
        rows.append({"peer": peer, "mix": mix, "label": name, "note": note, "value": total, "segments": segments,
                     "range": (min(totals), max(totals)), "value_text": fmt_cpu(total),
                     "data": {"value": f"{total:.6g}"},
                     "tooltip": f"{peer}, {mix}: {fmt_cpu(total)} of CPU per request ({parts}; rounds "
                                f"{', '.join(f'{t:.1f}' for t in totals)})"})
    rows.sort(key=lambda row: row["value"])
    return rows


def cpu_chart(path, results, runs, info, rounds_note):
    sections = []
    for mix, heading in by_mix(runs, ("one", "distinct")):
        rows = cpu_rows(results, runs, mix, [("server", None)])
        if rows:
            sections.append((heading, rows))
    if not sections:
        return None
    top = max(row["range"][1] for _, rows in sections for row in rows)
    subtitles = ["Lower is better. The server's utime + stime (/proc/PID/stat) over a round / the requests wrk "
                 "counted; thin line: lowest to highest round.",
                 "The proxies (gateway-proxy, nginx-proxy): their own process only; their shared upstream is in "
                 f"p3-cpu.svg. {rounds_note}"]
    legend = [(FAMILY_COLOUR[key], label) for key, label in FAMILY_LEGEND
              if any(family(row["peer"]) == key for _, rows in sections for row in rows)]
    axis = {"kind": "linear", "high": top, "label": "CPU time per request (µs, user + system)",
            "tick": lambda v: f"{v:g}"}
    return chart(path, "CPU per request, per peer", subtitles, legend, sections, axis, footer_lines(info, results),
                 bar_marks)


def p3_chart(path, results, runs, info, rounds_note):
    if not all((p, "one") in runs and report.cpu_rounds(results, p, "one") for p in ("nginx-proxy", "gateway-proxy")):
        return None
    # The two P3 compares, then the rows compared with them when the run has them (--baseline, --pingora).
    proxies = [p for p in ("nginx-proxy", "gateway-proxy", "gateway-baseline", "pingora-proxy")
               if (p, "one") in runs and report.cpu_rounds(results, p, "one")]
    sections = [("The proxy's own process", cpu_rows(results, [(p, "one") for p in proxies], "one",
                                                     [("server", None)])),
                ("Their shared upstream (plain axum on the same core), counted apart",
                 cpu_rows(results, [(p, "one") for p in proxies], "one", [("upstream", ROLE_COLOUR["upstream"])]))]
    for _, rows in sections[1:]:
        for row in rows:
            row["note"] = f"upstream of {row['peer']}"
            row["label"] = "ceiling"
    own = report.cpu_round_ratio(results, ("gateway-proxy", "one"), ("nginx-proxy", "one"))
    rps = report.round_ratio(results, ("gateway-proxy", "one"), ("nginx-proxy", "one"))
    top = max(row["range"][1] for _, rows in sections for row in rows)
    subtitles = [f"Repeated token, one core for the proxy and its upstream. Gateway / nginx CPU per request: "
                 f"{own:.2f} (P3 asks ≤ 1.00); requests/s: {rps:.2f} (P3 asks ≥ 1.00); medians of per-round "
                 "ratios.",
                 "Lower is better. utime + stime of each process over a round / the requests wrk counted. "
                 f"{rounds_note}"]
    legend = [(FAMILY_COLOUR["portcullis"], "portcullis gateway"), (FAMILY_COLOUR["peer"], "nginx, no auth"),
              (ROLE_COLOUR["upstream"], "the upstream")]
    if len(proxies) > 2:
        legend.insert(2, (FAMILY_COLOUR["baseline"], "compared: previous data path, Pingora prototype"))
    axis = {"kind": "linear", "high": top, "label": "CPU time per request (µs, user + system)",
            "tick": lambda v: f"{v:g}"}
    return chart(path, "P3: the reverse proxy's CPU per request, portcullis gateway and nginx", subtitles, legend,
                 sections, axis, footer_lines(info, results), bar_marks)


def latency_chart(path, results, runs, info, rounds_note):
    sections = []
    for mix, heading in by_mix(runs, ("one", "distinct", "mixed")):
        rows = []
        for (peer, m), r in runs.items():
            if m != mix or not r["p50"] or not r["p99"]:
                continue
            name, note = label_of(peer)
            rows.append({"peer": peer, "mix": mix, "label": name, "note": note, "p50": r["p50"], "p99": r["p99"],
                         "value_text": f"{fmt_time(r['p50'])} / {fmt_time(r['p99'])}",
                         "data": {"p50": f"{r['p50']:.6g}", "p99": f"{r['p99']:.6g}"},
                         "tooltip": f"{peer}, {mix}: p50 {fmt_time(r['p50'])}, p99 {fmt_time(r['p99'])} "
                                    "(medians of the rounds)"})
        rows.sort(key=lambda row: row["p50"])
        if rows:
            sections.append((heading, rows))
    if not sections:
        return None
    values = [v for _, rows in sections for row in rows for v in (row["p50"], row["p99"])]
    low, high = min(values), max(values)
    kind = "log" if high / low > 20 else "linear"
    subtitles = ["Lower is better. Dot: p50, diamond: p99 (wrk's, medians of the rounds) at full load: 50 connections "
                 "kept busy, so most of it is queueing (≈ 50 / requests per second).",
                 ("Log scale. " if kind == "log" else "") + rounds_note]
    legend = [(FAMILY_COLOUR[key], label) for key, label in FAMILY_LEGEND
              if any(family(row["peer"]) == key for _, rows in sections for row in rows)]
    axis = {"kind": kind, "low": low, "high": high, "label": "latency (p50 to p99)", "tick": fmt_tick_time}
    return chart(path, "Latency at full load, p50 and p99, per peer", subtitles, legend, sections, axis,
                 footer_lines(info, results), latency_marks)


def rounds_of(info, runs):
    rounds = max((len(r["all_rps"]) for r in runs.values()), default=0)
    seconds = info.get("seconds")
    return f"{rounds} rounds" + (f" of {seconds} s" if seconds else "") + " per row."


def out_path(outdir, prefix, name):
    return os.path.join(outdir, f"{prefix}-{name}" if prefix else name)


def draw_run(results, outdir, prefix=""):
    """The charts of a bench/run.sh results folder; returns the paths written."""
    runs = report.collect(results)
    if not runs:
        raise SystemExit(f"charts: no *.roundN.wrk files in {results}")
    info = report.run_info(results)
    note = rounds_of(info, runs)
    written = [requests_chart(out_path(outdir, prefix, "requests.svg"), results, runs, info,
                              "Requests per second, per peer and token mix", note),
               cpu_chart(out_path(outdir, prefix, "cpu.svg"), results, runs, info, note),
               p3_chart(out_path(outdir, prefix, "p3-cpu.svg"), results, runs, info, note),
               latency_chart(out_path(outdir, prefix, "latency.svg"), results, runs, info, note)]
    return [path for path in written if path]


def draw_envoy(results, outdir, prefix=""):
    """The charts of a bench/envoy.sh results folder; returns the paths written."""
    runs = report.collect(results)
    if not runs:
        raise SystemExit(f"charts: no *.roundN.wrk files in {results}")
    info = report.run_info(results)
    note = rounds_of(info, runs)
    written = [requests_chart(out_path(outdir, prefix, "envoy-requests.svg"), results, runs, info,
                              "Behind Envoy: jwt_authn against portcullis, requests per second", note)]
    sections = []
    for mix, heading in by_mix(runs, ("one", "distinct", "mixed")):
        rows = cpu_rows(results, runs, mix, [(role, ROLE_COLOUR[role]) for role in ("envoy", "portcullis",
                                                                                     "upstream")])
        if rows:
            sections.append((heading, rows))
    if sections:
        top = max(row["range"][1] for _, rows in sections for row in rows)
        subtitles = ["Lower is better. Every process serving the row, stacked: utime + stime (/proc/PID/stat) over a "
                     "round / the requests wrk counted;",
                     f"the bar is the median of the rounds' totals, the thin line their range. {note}"]
        axis = {"kind": "linear", "high": top, "label": "CPU time per request (µs, user + system, all processes)",
                "tick": lambda v: f"{v:g}"}
        written.append(chart(out_path(outdir, prefix, "envoy-cpu.svg"),
                             "Behind Envoy: CPU per request of each process", subtitles,
                             [(ROLE_COLOUR[role], label) for role, label in ROLE_LEGEND], sections, axis,
                             footer_lines(info, results), bar_marks))
    return written


def main():
    args = sys.argv[1:]
    if not args or args[0].startswith("--"):
        raise SystemExit(__doc__)
    outdir = args[0]
    prefix = report.option("--prefix", "")
    run, envoy = report.option("--run", None), report.option("--envoy", None)
    if not (run or envoy):
        raise SystemExit("charts: give --run RESULTS_DIR, --envoy RESULTS_DIR or both")
    paths = (draw_run(run, outdir, prefix) if run else []) + (draw_envoy(envoy, outdir, prefix) if envoy else [])
    for path in paths:
        print(path)


if __name__ == "__main__":
    main()
