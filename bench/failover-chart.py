#!/usr/bin/env python3
"""Draws the failover timeline as an SVG: successful and failed requests per
second (250 ms buckets) while one registry replica is killed and restarted.

Input: the CSV tests/scaleout.rs writes when REGPROXY_FAILOVER_TIMELINE is
set (`ms,ok` rows, then `# killed_ms=N restarted_ms=M`). No dependencies.

    REGPROXY_FAILOVER_TIMELINE=bench/results/failover-timeline.csv \
        cargo test --release --test scaleout failover -- --nocapture
    bench/failover-chart.py bench/results/failover-timeline.csv bench/results/failover.svg
"""
import sys

BUCKET_MS = 250
W, H, PAD = 720, 300, 50


def main(src, dst):
    rows, marks = [], {}
    for line in open(src):
        line = line.strip()
        if line.startswith("#"):
            for kv in line[1:].split():
                k, v = kv.split("=")
                marks[k] = int(v)
        elif line and line[0].isdigit():
            ms, ok = line.split(",")
            rows.append((int(ms), ok == "1"))
    end = max(ms for ms, _ in rows) + 1
    n = end // BUCKET_MS + 1
    good, bad = [0] * n, [0] * n
    for ms, ok in rows:
        (good if ok else bad)[ms // BUCKET_MS] += 1
    scale = 1000 / BUCKET_MS
    top = max(max(good), 1) * scale * 1.15
    x = lambda ms: PAD + (W - 2 * PAD) * ms / end
    y = lambda v: H - PAD - (H - 2 * PAD) * v / top
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">',
           f'<rect width="{W}" height="{H}" fill="white"/>',
           f'<line x1="{PAD}" y1="{H-PAD}" x2="{W-PAD}" y2="{H-PAD}" stroke="black"/>',
           f'<line x1="{PAD}" y1="{PAD}" x2="{PAD}" y2="{H-PAD}" stroke="black"/>']
    for s in range(0, end // 1000 + 1):
        out.append(f'<text x="{x(s*1000):.1f}" y="{H-PAD+16}" text-anchor="middle">{s}s</text>')
    step = next(s for s in (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000) if s >= top / 5)
    for v in range(0, int(top), step):
        out.append(f'<text x="{PAD-6}" y="{y(v)+4:.1f}" text-anchor="end">{v}</text>')
        out.append(f'<line x1="{PAD}" y1="{y(v):.1f}" x2="{W-PAD}" y2="{y(v):.1f}" stroke="#eee"/>')
    pts = " ".join(f"{x(i*BUCKET_MS + BUCKET_MS/2):.1f},{y(g*scale):.1f}" for i, g in enumerate(good))
    out.append(f'<polyline points="{pts}" fill="none" stroke="#1f77b4" stroke-width="2"/>')
    for i, b in enumerate(bad):
        if b:
            bx = x(i * BUCKET_MS)
            out.append(f'<rect x="{bx:.1f}" y="{y(b*scale):.1f}" width="{x(BUCKET_MS)-PAD:.1f}" height="{H-PAD-y(b*scale):.1f}" fill="#d62728"/>')
            out.append(f'<text x="{bx:.1f}" y="{y(b*scale)-4:.1f}" fill="#d62728">{b} failed</text>')
    for key, label in (("killed_ms", "replica killed"), ("restarted_ms", "replica restarted")):
        if key in marks:
            mx = x(marks[key])
            out.append(f'<line x1="{mx:.1f}" y1="{PAD}" x2="{mx:.1f}" y2="{H-PAD}" stroke="gray" stroke-dasharray="4"/>')
            out.append(f'<text x="{mx+4:.1f}" y="{PAD+12}" fill="gray">{label}</text>')
    out.append(f'<text x="{W/2}" y="20" text-anchor="middle" font-size="14">Blob pulls through regproxy (8 clients), two registry replicas: requests/s (blue), failures (red)</text>')
    out.append("</svg>")
    open(dst, "w").write("\n".join(out) + "\n")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
