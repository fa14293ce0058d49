#!/usr/bin/env python3
"""Draws a bench/soak run as an SVG: regproxy's RSS (MiB), open descriptors
and the probe's p99 (ms) over time. No dependencies.

    bench/soak --duration 30m --out bench/results/soak.tsv
    bench/soak-chart.py bench/results/soak.tsv bench/results/soak.svg
"""
import sys

W, H, PAD = 720, 300, 50
SERIES = (  # column, scale, colour, label
    ("rss_kib", 1 / 1024, "#1f77b4", "RSS (MiB)"),
    ("fds", 1, "#2ca02c", "open descriptors"),
    ("probe_p99_us", 1 / 1000, "#ff7f0e", "probe p99 (ms)"),
)


def main(src, dst):
    lines = [l.split("\t") for l in open(src).read().splitlines() if l and not l.startswith("#")]
    cols, rows = lines[0], [dict(zip(lines[0], map(float, r))) for r in lines[1:]]
    end = max(r["t_s"] for r in rows) or 1
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H * len(SERIES)}" font-family="sans-serif" font-size="12">',
           f'<rect width="{W}" height="{H * len(SERIES)}" fill="white"/>']
    for k, (col, scale, colour, label) in enumerate(SERIES):
        y0 = k * H
        vals = [r[col] * scale for r in rows]
        top = max(max(vals), 1) * 1.15
        x = lambda t: PAD + (W - 2 * PAD) * t / end
        y = lambda v: y0 + H - PAD - (H - 2 * PAD) * v / top
        out.append(f'<line x1="{PAD}" y1="{y0+H-PAD}" x2="{W-PAD}" y2="{y0+H-PAD}" stroke="black"/>')
        out.append(f'<line x1="{PAD}" y1="{y0+PAD}" x2="{PAD}" y2="{y0+H-PAD}" stroke="black"/>')
        for m in range(0, int(end // 60) + 1, 5):
            out.append(f'<text x="{x(m*60):.1f}" y="{y0+H-PAD+16}" text-anchor="middle">{m} min</text>')
        for frac in (0, 0.5, 1):
            v = top / 1.15 * frac
            out.append(f'<text x="{PAD-6}" y="{y(v)+4:.1f}" text-anchor="end">{v:.0f}</text>')
        pts = " ".join(f"{x(r['t_s']):.1f},{y(v):.1f}" for r, v in zip(rows, vals))
        out.append(f'<polyline points="{pts}" fill="none" stroke="{colour}" stroke-width="1.5"/>')
        out.append(f'<text x="{W/2}" y="{y0+30}" text-anchor="middle" font-size="14" fill="{colour}">{label}</text>')
    out.append("</svg>")
    open(dst, "w").write("\n".join(out) + "\n")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
