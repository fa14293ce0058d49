#!/usr/bin/env python3
"""Draws the failover timeline as an SVG: requests per second to each
registry replica, and failed answers, while replica A is killed and
restarted under regbench `ci` and a 1 GiB push.

Input: the TSV tests/scaleout.rs writes when REGPROXY_FAILOVER_TIMELINE is
set (from regproxy's JSON access log: a `# killed at Xs, restarted at Ys`
line, then `second to_a to_b failed` rows). No dependencies.

    REGPROXY_FAILOVER_TIMELINE=bench/results/failover-timeline.tsv \
        cargo test --release --test scaleout failover -- --nocapture
    bench/failover-chart.py bench/results/failover-timeline.tsv bench/results/failover.svg
"""
import re
import sys

W, H, PAD = 720, 300, 50
SERIES = (("to_a", "#1f77b4", "to replica A"), ("to_b", "#2ca02c", "to replica B"))


def main(src, dst):
    rows, marks = [], {}
    for line in open(src):
        line = line.strip()
        m = re.match(r"# killed at ([\d.]+)s, restarted at ([\d.]+)s", line)
        if m:
            marks = {"replica A killed": float(m[1]), "replica A restarted": float(m[2])}
        elif line and (line[0].isdigit() or line[0] == "-"):
            s, a, b, f = (int(v) for v in line.split("\t"))
            if s >= 0:
                rows.append({"s": s, "to_a": a, "to_b": b, "failed": f})
    end = max(r["s"] for r in rows) + 1
    top = max(max(r["to_a"] + r["to_b"] for r in rows), 1) * 1.15
    x = lambda s: PAD + (W - 2 * PAD) * s / end
    y = lambda v: H - PAD - (H - 2 * PAD) * v / top
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">',
           f'<rect width="{W}" height="{H}" fill="white"/>',
           f'<line x1="{PAD}" y1="{H-PAD}" x2="{W-PAD}" y2="{H-PAD}" stroke="black"/>',
           f'<line x1="{PAD}" y1="{PAD}" x2="{PAD}" y2="{H-PAD}" stroke="black"/>']
    for s in range(0, end + 1, 2):
        out.append(f'<text x="{x(s):.1f}" y="{H-PAD+16}" text-anchor="middle">{s}s</text>')
    step = next(s for s in (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000) if s >= top / 5)
    for v in range(0, int(top), step):
        out.append(f'<text x="{PAD-6}" y="{y(v)+4:.1f}" text-anchor="end">{v}</text>')
        out.append(f'<line x1="{PAD}" y1="{y(v):.1f}" x2="{W-PAD}" y2="{y(v):.1f}" stroke="#eee"/>')
    for key, colour, _ in SERIES:
        pts = " ".join(f"{x(r['s'] + 0.5):.1f},{y(r[key]):.1f}" for r in rows)
        out.append(f'<polyline points="{pts}" fill="none" stroke="{colour}" stroke-width="2"/>')
    for r in rows:
        if r["failed"]:
            out.append(f'<rect x="{x(r["s"]):.1f}" y="{y(r["failed"]):.1f}" width="{x(1)-PAD:.1f}" height="{H-PAD-y(r["failed"]):.1f}" fill="#d62728"/>')
            out.append(f'<text x="{x(r["s"]):.1f}" y="{y(r["failed"])-4:.1f}" fill="#d62728">{r["failed"]} failed</text>')
    for label, at in marks.items():
        mx = x(at)
        out.append(f'<line x1="{mx:.1f}" y1="{PAD}" x2="{mx:.1f}" y2="{H-PAD}" stroke="gray" stroke-dasharray="4"/>')
        out.append(f'<text x="{mx+4:.1f}" y="{PAD+12 + (14 if "restarted" in label else 0)}" fill="gray">{label}</text>')
    for i, (_, colour, name) in enumerate(SERIES):
        out.append(f'<text x="{W-PAD-150}" y="{PAD+12+14*i}" fill="{colour}">{name}</text>')
    out.append(f'<text x="{W/2}" y="20" text-anchor="middle" font-size="14">regbench ci (8 clients) + a 1 GiB push through regproxy: requests/s per replica, failures (red)</text>')
    out.append("</svg>")
    open(dst, "w").write("\n".join(out) + "\n")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
