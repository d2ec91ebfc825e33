"""scaling.svg: two panels against the number of workers N (log2 axis): throughput (queries/s),
and p50 / p99 batch latency (ms). Measured values are points joined by solid lines; the cost
model's prediction is a dashed line. Plain SVG, no plotting library.

Every series is a <g> with an id the test checks: measured-throughput, predicted-throughput,
measured-p50, measured-p99, predicted-latency (a lone batch), predicted-loaded-latency (under the
run's C clients); the predicted ones only when a cost model exists.
"""
import math
from xml.sax.saxutils import escape

W, H = 980, 460
PANEL_W, PANEL_H = 380, 300
LEFT, TOP = 95, 60
GAP = 110
COLOURS = {"measured-throughput": "#1f77b4", "predicted-throughput": "#1f77b4",
           "measured-p50": "#2ca02c", "measured-p99": "#d62728", "predicted-latency": "#2ca02c",
           "predicted-loaded-latency": "#9467bd"}


def _nice_max(v):
    if v <= 0 or not math.isfinite(v):
        return 1.0
    e = 10 ** math.floor(math.log10(v))
    for m in (1, 2, 2.5, 5, 10):
        if v <= m * e:
            return m * e
    return 10 * e


def _fmt(v):
    if v >= 1000:
        return f"{v:,.0f}"
    if v >= 10:
        return f"{v:.0f}"
    if v >= 1:
        return f"{v:.1f}"
    return f"{v:.2g}"


class _Panel:
    def __init__(self, x0, ns, ymax, title, ylabel):
        self.x0, self.ymax = x0, _nice_max(ymax * 1.08)
        self.lo, self.hi = math.log2(min(ns)), math.log2(max(ns))
        if self.hi == self.lo:
            self.hi += 1
        self.ns, self.title, self.ylabel = ns, title, ylabel

    def x(self, n):
        return self.x0 + (math.log2(n) - self.lo) / (self.hi - self.lo) * PANEL_W

    def y(self, v):
        return TOP + PANEL_H - min(v, self.ymax) / self.ymax * PANEL_H

    def axes(self):
        out = [f'<g class="axes"><rect x="{self.x0}" y="{TOP}" width="{PANEL_W}" '
               f'height="{PANEL_H}" fill="none" stroke="#444"/>',
               f'<text x="{self.x0 + PANEL_W / 2}" y="{TOP - 12}" text-anchor="middle" '
               f'font-weight="bold">{escape(self.title)}</text>',
               f'<text x="{self.x0 + PANEL_W / 2}" y="{TOP + PANEL_H + 38}" '
               f'text-anchor="middle">workers N (log scale)</text>',
               f'<text transform="translate({self.x0 - 72},{TOP + PANEL_H / 2}) rotate(-90)" '
               f'text-anchor="middle">{escape(self.ylabel)}</text>']
        for n in self.ns:
            x = self.x(n)
            out.append(f'<line x1="{x:.1f}" y1="{TOP + PANEL_H}" x2="{x:.1f}" '
                       f'y2="{TOP + PANEL_H + 5}" stroke="#444"/>')
            out.append(f'<text x="{x:.1f}" y="{TOP + PANEL_H + 18}" '
                       f'text-anchor="middle">{n}</text>')
        for i in range(6):
            v = self.ymax * i / 5
            y = self.y(v)
            out.append(f'<line x1="{self.x0}" y1="{y:.1f}" x2="{self.x0 + PANEL_W}" '
                       f'y2="{y:.1f}" stroke="#ddd"/>')
            out.append(f'<text x="{self.x0 - 6}" y="{y + 4:.1f}" '
                       f'text-anchor="end">{_fmt(v)}</text>')
        out.append("</g>")
        return out

    def series(self, sid, label, points, dashed):
        colour = COLOURS[sid]
        pts = " ".join(f"{self.x(n):.1f},{self.y(v):.1f}" for n, v in points)
        dash = ' stroke-dasharray="6,4"' if dashed else ""
        out = [f'<g id="{sid}" class="series"><title>{escape(label)}</title>',
               f'<polyline points="{pts}" fill="none" stroke="{colour}" stroke-width="2"{dash}/>']
        if not dashed:
            for n, v in points:
                out.append(f'<circle cx="{self.x(n):.1f}" cy="{self.y(v):.1f}" r="4" '
                           f'fill="{colour}"><title>N = {n}: {_fmt(v)}</title></circle>')
        out.append("</g>")
        return out


def write_svg(path, measured, predicted, title):
    """measured: rows with N, throughput_qps, p50_ms, p99_ms; predicted: [{N, latency_ms,
    throughput_qps}] (may be empty)."""
    ns = sorted({r["N"] for r in measured} | {p["N"] for p in predicted}) or [1]
    m = sorted(measured, key=lambda r: r["N"])
    p = sorted(predicted, key=lambda r: r["N"])
    tmax = max([r["throughput_qps"] for r in m] + [r["throughput_qps"] for r in p] + [1e-9])
    lmax = max([r["p99_ms"] for r in m] + [r["loaded_latency_ms"] for r in p] + [1e-9])
    tp = _Panel(LEFT, ns, tmax, "Throughput", "queries / s")
    lp = _Panel(LEFT + PANEL_W + GAP, ns, lmax, "Batch latency", "ms per predict batch")
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" '
           f'font-family="sans-serif" font-size="12">',
           f'<rect width="{W}" height="{H}" fill="white"/>',
           f'<text x="{W / 2}" y="22" text-anchor="middle" font-size="14">'
           f'{escape(title)}</text>']
    out += tp.axes() + lp.axes()
    out += tp.series("measured-throughput", "measured throughput",
                     [(r["N"], r["throughput_qps"]) for r in m], False)
    out += lp.series("measured-p50", "measured p50", [(r["N"], r["p50_ms"]) for r in m], False)
    out += lp.series("measured-p99", "measured p99", [(r["N"], r["p99_ms"]) for r in m], False)
    legend = [("measured-throughput", "throughput, measured", False),
              ("measured-p50", "p50 latency, measured", False),
              ("measured-p99", "p99 latency, measured", False)]
    if p:
        out += tp.series("predicted-throughput", "predicted throughput (a core per worker)",
                         [(r["N"], r["throughput_qps"]) for r in p], True)
        out += lp.series("predicted-latency", "predicted latency (a core per worker)",
                         [(r["N"], r["latency_ms"]) for r in p], True)
        out += lp.series("predicted-loaded-latency",
                         "predicted latency under the C clients (a core per worker)",
                         [(r["N"], r["loaded_latency_ms"]) for r in p], True)
        legend += [("predicted-throughput", "throughput, cost model (a core per worker)", True),
                   ("predicted-latency", "lone-batch latency, cost model", True),
                   ("predicted-loaded-latency", "latency under C clients, cost model", True)]
    out.append('<g id="legend">')
    y = TOP + PANEL_H + 58
    for i, (sid, label, dashed) in enumerate(legend):
        x = LEFT + (i % 3) * 300
        yy = y + (i // 3) * 16
        dash = ' stroke-dasharray="6,4"' if dashed else ""
        out.append(f'<line x1="{x}" y1="{yy - 4}" x2="{x + 24}" y2="{yy - 4}" '
                   f'stroke="{COLOURS[sid]}" stroke-width="2"{dash}/>')
        out.append(f'<text x="{x + 30}" y="{yy}">{escape(label)}</text>')
    out.append("</g></svg>")
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")
