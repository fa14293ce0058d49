#!/usr/bin/env python3
"""Turns bench/fleet's runs.tsv into results.md, chart.svg and summary.json.

One row of runs.tsv is one measured run: front, round (1: one repository,
2: a repository per client), phase (cold, hot, or one: a single client's
GET), repetition, the fleet's wall time, the bytes that crossed the link,
the bytes the clients received, the front's CPU-seconds and peak RSS, failed
transfers, client 0's verified layers and the registry's blob GETs.

Per front, round and phase it takes the median over repetitions (the peak
RSS: the largest), then checks the targets of the edge cache against nginx.
No dependencies beyond the standard library.
"""

import argparse
import csv
import json
import statistics
from pathlib import Path

GIB = 1 << 30
MIB = 1 << 20
FRONTS = ["direct", "nginx", "registry-proxy", "regproxy", "nginx-tls", "regproxy-tls"]
LABELS = {
    "direct": "direct (no front)",
    "nginx": "nginx proxy_cache + lock",
    "registry-proxy": "registry proxy mode",
    "regproxy": "regproxy cache",
    "nginx-tls": "nginx proxy_cache + lock, TLS 1.3",
    "regproxy-tls": "regproxy cache, TLS 1.3",
}
COLORS = {
    "direct": "#7f7f7f",
    "nginx": "#ff7f0e",
    "registry-proxy": "#2ca02c",
    "regproxy": "#1f77b4",
    "nginx-tls": "#ffbb78",
    "regproxy-tls": "#aec7e8",
}


def num(v):
    return float(v) if v not in ("", None) else None


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def ratio(a, b):
    return a / b if a is not None and b else None


def fmt(v, digits=1, suffix=""):
    return "–" if v is None else f"{v:,.{digits}f}{suffix}"


def load(path):
    """(front, round, phase) -> list of runs."""
    out = {}
    with open(path, newline="") as f:
        for r in csv.DictReader(f, delimiter="\t"):
            # The transfer-time columns are newer than the others.
            run = {k: num(r.get(k)) for k in ("wall_s", "link_bytes", "served_bytes", "cpu_s", "rss_kib",
                                              "errors", "verified", "upstream_gets", "transfer_p50_s",
                                              "transfer_max_s", "first_byte_max_s")}
            out.setdefault((r["front"], int(r["round"]), r["phase"]), []).append(run)
    return out


def summarize(runs, image_bytes):
    s = {}
    for key, reps in runs.items():
        per = []
        for r in reps:
            served = r["served_bytes"] or 0
            per.append({
                "wall": r["wall_s"],
                "link": r["link_bytes"] / image_bytes,
                "cpu_gib": r["cpu_s"] / (served / GIB) if r["cpu_s"] is not None and served else None,
                "mib_s": served / MIB / r["wall_s"] if r["wall_s"] else None,
                "gets": r["upstream_gets"],
                "p50": r["transfer_p50_s"],
                "slowest": r["transfer_max_s"],
                "first_byte": r["first_byte_max_s"],
            })
        s[key] = {k: median([p[k] for p in per]) for k in per[0]} | {
            "rss_mib": max((r["rss_kib"] for r in reps if r["rss_kib"] is not None), default=None),
            "errors": int(sum(r["errors"] or 0 for r in reps)),
            "verified": min(int(r["verified"] or 0) for r in reps),
            "reps": len(reps),
        }
        if s[key]["rss_mib"] is not None:
            s[key]["rss_mib"] /= 1024
    return s


def get(s, front, rnd, phase, field):
    return s.get((front, rnd, phase), {}).get(field)


def round_table(s, rnd, title):
    md = [f"### {title}", "",
          "| front | cold wall s | link bytes, cold | registry blob GETs | CPU-s/GiB cold | peak RSS MiB cold "
          "| hot wall s | link bytes, hot | CPU-s/GiB hot | peak RSS MiB hot | failed transfers |",
          "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for f in FRONTS[:4]:
        cold, hot = s.get((f, rnd, "cold")), s.get((f, rnd, "hot"))
        if not cold and not hot:
            continue
        cold, hot = cold or {}, hot or {}
        md.append("| " + " | ".join([
            LABELS[f], fmt(cold.get("wall")), fmt(cold.get("link"), 2, "×"), fmt(cold.get("gets"), 0),
            fmt(cold.get("cpu_gib"), 2), fmt(cold.get("rss_mib")),
            fmt(hot.get("wall")), fmt(hot.get("link"), 2, "×"),
            fmt(hot.get("cpu_gib"), 2), fmt(hot.get("rss_mib")),
            str(cold.get("errors", 0) + hot.get("errors", 0)),
        ]) + " |")
    return md + [""]


def tls_table(s):
    rows = [f for f in ("nginx-tls", "regproxy-tls") if (f, 1, "hot") in s]
    if not rows:
        return []
    md = ["### TLS, hot (the front terminates TLS 1.3; its cache warmed by one client first)", "",
          "| front | hot wall s | CPU-s/GiB | peak RSS MiB | failed transfers |", "|---|---:|---:|---:|---:|"]
    for f in rows:
        r = s[(f, 1, "hot")]
        md.append(f"| {LABELS[f]} | {fmt(r['wall'])} | {fmt(r['cpu_gib'], 2)} | {fmt(r['rss_mib'])} | {r['errors']} |")
    return md + [""]


def times_table(s):
    rows = [(f, rnd, ph) for f in FRONTS for rnd in (1, 2) for ph in ("cold", "hot")
            if s.get((f, rnd, ph), {}).get("slowest") is not None]
    if not rows:
        return []
    md = ["### Transfer times (each client's GET of each layer)", "",
          "Whether a fleet's wall is a few slow transfers or all of them, and whether they waited "
          "for their first byte.", "",
          "| front | round | run | median transfer s | slowest transfer s | latest first byte s |",
          "|---|---:|---|---:|---:|---:|"]
    for f, rnd, ph in rows:
        r = s[(f, rnd, ph)]
        md.append(f"| {LABELS[f]} | {rnd} | {ph} | {fmt(r['p50'], 2)} | {fmt(r['slowest'], 2)} | {fmt(r['first_byte'], 2)} |")
    return md + [""]


def one_table(s, n):
    rows = [f for f in FRONTS[:4] if (f, 1, "one") in s]
    if not rows:
        return []
    md = [f"### One hot client on plain (one layer, one curl; median of {n} GETs)", "",
          "| front | MiB/s | CPU-s/GiB | failed |", "|---|---:|---:|---:|"]
    for f in rows:
        r = s[(f, 1, "one")]
        md.append(f"| {LABELS[f]} | {fmt(r['mib_s'], 0)} | {fmt(r['cpu_gib'], 2)} | {r['errors']} |")
    return md + [""]


def targets(s):
    """The edge cache's targets, each as measured and whether it is met."""
    out = []
    for rnd in (1, 2):
        x = get(s, "regproxy", rnd, "cold", "link")
        out.append((f"round {rnd}, cold: link bytes ≤ 1.02× the image", fmt(x, 2, "×"), x is not None and x <= 1.02))
    for rnd in (1, 2):
        a, b = get(s, "regproxy", rnd, "cold", "wall"), get(s, "nginx", rnd, "cold", "wall")
        r = ratio(a, b)
        out.append((f"round {rnd}, cold wall ≤ 0.9× nginx's", f"{fmt(r, 2, '×')} ({fmt(a)} vs {fmt(b)} s)",
                    r is not None and r <= 0.9))
    c = get(s, "regproxy", 1, "hot", "cpu_gib")
    a, b = get(s, "regproxy", 1, "hot", "wall"), get(s, "nginx", 1, "hot", "wall")
    out.append(("hot plain: ≤ 0.1 CPU-s/GiB served", fmt(c, 2), c is not None and c <= 0.1))
    out.append(("hot plain: fleet wall ≤ nginx's", f"{fmt(a)} vs {fmt(b)} s", None not in (a, b) and a <= b))
    a, b = get(s, "regproxy-tls", 1, "hot", "cpu_gib"), get(s, "nginx-tls", 1, "hot", "cpu_gib")
    r = ratio(a, b)
    out.append(("hot TLS: ≤ 0.6× nginx's CPU-s/GiB", f"{fmt(r, 2, '×')} ({fmt(a, 2)} vs {fmt(b, 2)})",
                r is not None and r <= 0.6))
    a, b = get(s, "regproxy", 1, "one", "mib_s"), get(s, "nginx", 1, "one", "mib_s")
    r = ratio(a, b)
    out.append(("one hot client on plain: ≥ 0.9× nginx's rate (sendfile)", f"{fmt(r, 2, '×')} ({fmt(a, 0)} vs {fmt(b, 0)} MiB/s)",
                r is not None and r >= 0.9))
    peaks = [v["rss_mib"] for (f, _, _), v in s.items() if f.startswith("regproxy") and v["rss_mib"] is not None]
    p = max(peaks) if peaks else None
    out.append(("peak RSS < 16 MiB (every regproxy run)", fmt(p, 1, " MiB"), p is not None and p < 16))
    return out


def peer_wins(s):
    """Where a peer does better than regproxy: the lines the README must say plainly."""
    lines = []
    checks = [("cold", "wall", "cold wall", "s", 1), ("cold", "link", "cold link bytes", "×", 2),
              ("hot", "wall", "hot wall", "s", 1), ("cold", "cpu_gib", "cold CPU-s/GiB", "", 2),
              ("hot", "cpu_gib", "hot CPU-s/GiB", "", 2), ("hot", "rss_mib", "hot peak RSS", " MiB", 1),
              ("cold", "rss_mib", "cold peak RSS", " MiB", 1)]
    for rnd in (1, 2):
        for phase, field, what, unit, digits in checks:
            mine = get(s, "regproxy", rnd, phase, field)
            if mine is None:
                continue
            for peer in ("nginx", "registry-proxy", "direct"):
                theirs = get(s, peer, rnd, phase, field)
                # Within 2 %: a tie, not a win.
                if theirs is not None and theirs < mine * 0.98:
                    lines.append(f"round {rnd}, {what}: {LABELS[peer]} {fmt(theirs, digits, unit)} "
                                 f"against regproxy's {fmt(mine, digits, unit)}")
    for field, what, digits in (("cpu_gib", "TLS hot CPU-s/GiB", 2), ("wall", "TLS hot wall", 1)):
        mine, theirs = get(s, "regproxy-tls", 1, "hot", field), get(s, "nginx-tls", 1, "hot", field)
        if None not in (mine, theirs) and theirs < mine * 0.98:
            lines.append(f"{what}: nginx {fmt(theirs, digits)} against regproxy's {fmt(mine, digits)}")
    mine, theirs = get(s, "regproxy", 1, "one", "mib_s"), get(s, "nginx", 1, "one", "mib_s")
    if None not in (mine, theirs) and theirs > mine * 1.02:
        lines.append(f"one hot client: nginx {fmt(theirs, 0)} MiB/s against regproxy's {fmt(mine, 0)}")
    return lines


def bars(title, groups, unit, digits, y, left=250, width=380, bar_h=14):
    """One panel of horizontal bars: groups = [(heading, [(front, value)])]."""
    values = [v for _, rows in groups for _, v in rows if v is not None]
    top = max(values) * 1.1 if values and max(values) > 0 else 1.0
    parts = [f'<text x="10" y="{y + 14}" font-size="13" font-weight="bold">{title}</text>']
    y += 22
    for heading, rows in groups:
        rows = [(f, v) for f, v in rows if v is not None]
        if not rows:
            continue
        parts.append(f'<text x="10" y="{y + 11}" font-style="italic">{heading}</text>')
        y += 15
        for f, v in rows:
            w = v / top * width
            parts.append(f'<text x="{left - 6}" y="{y + 11}" text-anchor="end">{LABELS[f]}</text>')
            parts.append(f'<rect x="{left}" y="{y + 1}" width="{w:.1f}" height="{bar_h - 3}" fill="{COLORS[f]}"/>')
            parts.append(f'<text x="{left + w + 4:.1f}" y="{y + 11}">{v:.{digits}f}{unit}</text>')
            y += bar_h
        y += 6
    return parts, y + 10


def svg(s):
    plain = FRONTS[:4]
    panels = [
        ("Fleet wall time, cold (s; lower is better)", "s", 1,
         [(f"round {r}", [(f, get(s, f, r, "cold", "wall")) for f in plain]) for r in (1, 2)]),
        ("Bytes over the link, cold (× the image's layers)", "×", 2,
         [(f"round {r}", [(f, get(s, f, r, "cold", "link")) for f in plain]) for r in (1, 2)]),
        ("Front CPU-s per GiB served, hot", "", 2,
         [("round 1, plain", [(f, get(s, f, 1, "hot", "cpu_gib")) for f in plain[1:]]),
          ("TLS", [(f, get(s, f, 1, "hot", "cpu_gib")) for f in ("nginx-tls", "regproxy-tls")])]),
    ]
    body, y = [], 10
    for title, unit, digits, groups in panels:
        parts, y = bars(title, groups, unit, digits, y)
        body += parts
    head = [f'<svg xmlns="http://www.w3.org/2000/svg" width="720" height="{y}" font-family="sans-serif" font-size="11">',
            '<rect width="100%" height="100%" fill="white"/>']
    return "\n".join(head + body + ["</svg>"]) + "\n"


def main():
    ap = argparse.ArgumentParser()
    for name in ("runs", "out", "date", "machine", "versions", "command", "elapsed"):
        ap.add_argument(f"--{name}", required=True)
    ap.add_argument("--layer-bytes", type=int, required=True)
    ap.add_argument("--clients", type=int, required=True)
    ap.add_argument("--load", default="")
    ap.add_argument("--storage", default="")
    ap.add_argument("--skipped", default="")
    a = ap.parse_args()
    image = 3 * a.layer_bytes
    runs = load(a.runs)
    s = summarize(runs, image)
    one_n = len(runs.get(next((k for k in runs if k[2] == "one"), None), []))
    md = [
        "## Results: the fleet bench",
        "",
        f"- date: {a.date}",
        f"- machine: {a.machine}",
        f"- peers: {a.versions}",
        f"- command: `{a.command}` ({a.elapsed} s of measurement)",
        f"- load average before and after: {a.load}",
        f"- {a.clients} clients, 3 layers of {a.layer_bytes / MIB:.0f} MiB ({image / MIB:.0f} MiB per pull); "
        "the registry behind a veth pair shaped to 1 Gbit/s both ways (tc tbf)",
        f"- registry storage and caches: {a.storage}",
        "- medians over the repetitions; link bytes = both directions of the veth / the image's layer bytes; "
        "CPU-s/GiB = utime+stime of all the front's processes / bytes the clients received; "
        "peak RSS = sum of VmHWM, reset before each run, the largest over the repetitions.",
        "",
    ]
    if a.skipped:
        md += [f"**regproxy was not measured**: {a.skipped}", ""]
    md += round_table(s, 1, "Round 1: every client pulls the same repository")
    md += round_table(s, 2, f"Round 2: the same layers through {a.clients} different repositories")
    md += tls_table(s)
    md += one_table(s, one_n)
    md += times_table(s)
    if any(k[0] == "regproxy" for k in s):
        md += ["### Targets", "", "| target | measured | met |", "|---|---|---|"]
        for goal, measured, ok in targets(s):
            md.append(f"| {goal} | {measured} | {'yes' if ok else '**no**'} |")
        md.append("")
        wins = peer_wins(s)
        md += ["### Where a peer does better", ""]
        md += [f"- {w}" for w in wins] if wins else ["- nowhere in this run (within 2 %)"]
        md.append("")
    verified = [v["verified"] for (_, _, p), v in s.items() if p in ("cold", "hot")]
    if verified and min(verified) < 3:
        md += ["**Client 0 could not verify every layer in some run: see failed transfers.**", ""]
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.md").write_text("\n".join(md))
    (out / "chart.svg").write_text(svg(s))
    (out / "summary.json").write_text(json.dumps({f"{f}/{r}/{p}": v for (f, r, p), v in s.items()},
                                                 indent=1, sort_keys=True))
    print("\n".join(md))


if __name__ == "__main__":
    main()
