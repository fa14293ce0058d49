#!/usr/bin/env python3
"""Turns bench/compare's raw results (one regbench JSON report per run, and
the proxy CPU and RSS measured around it) into results.md and chart.svg.

Per scenario and target it takes the median over repetitions of:
throughput (req/s for small requests, MB/s for blobs), the p99 latency of
the scenario's main request, proxy CPU-seconds per GiB moved and per 10k
requests, and the largest peak RSS. Then it computes regproxy against the
best peer and every proxy against direct, and checks the goals of issue 3.
"""

import argparse
import csv
import json
import statistics
from pathlib import Path

GIB = 1 << 30
PEERS_TLS = ["recipe", "tuned", "haproxy"]
LABELS = {
    "direct": "direct (no proxy)",
    "recipe": "nginx recipe",
    "tuned": "nginx tuned",
    "tuned-noauth": "nginx tuned, no auth",
    "haproxy": "HAProxy",
    "haproxy-noauth": "HAProxy, no auth",
    "regproxy": "regproxy",
    "haproxy-plain": "HAProxy plain+splice",
    "regproxy-plain": "regproxy plain",
}
TITLES = {
    ("registry", "ping"): "Authenticated GET /v2/, real registry (32 clients)",
    ("registry", "head"): "HEAD manifest/blob, real registry (32 clients)",
    ("registry", "pull"): "Pull a large blob, real registry (1 client)",
    ("registry", "push"): "Push a large blob, chunked PATCH, real registry (1 client)",
    ("registry", "ci"): "CI fleet mix, real registry (8 clients)",
    ("origin", "ping"): "GET /v2/ against the fast origin (32 clients)",
    ("origin", "head"): "HEAD against the fast origin (32 clients)",
}
# The request kind whose p99 the table shows.
MAIN_KIND = {"pull": "blob GET", "push": "upload PATCH"}


def row_by_name(rows, name):
    for r in rows:
        if r["name"] == name:
            return r
    return None


def measure(report, cpu_s):
    """The figures of one run."""
    scenario = report["scenario"]
    total = report["total"]
    requests = total["ok"] + total["errors"]
    moved = total["bytes_sent"] + total["bytes_received"]
    if scenario in ("pull", "push"):
        throughput = total["mb_per_second"]
    elif scenario == "ci":
        throughput = report["operations"][0]["per_second"] if report["operations"] else 0.0
    else:
        throughput = total["per_second"]
    main = row_by_name(report["requests"], MAIN_KIND.get(scenario, "")) or total
    if scenario == "ci" and report["operations"]:
        main = report["operations"][0]
    return {
        "throughput": throughput,
        "req_s": total["per_second"],
        "p99_ms": main["latency_us"]["p99"] / 1000.0,
        "cpu_s": cpu_s,
        "cpu_per_gib": cpu_s / (moved / GIB) if moved > 16 << 20 else None,
        "cpu_per_10k": cpu_s / requests * 1e4 if requests else None,
        "cpu_us_per_req": cpu_s / requests * 1e6 if requests else None,
        "errors": sum(e["count"] for e in report["errors"]),
        "requests": requests,
        "elapsed_s": report.get("elapsed_s"),
        "gib": moved / GIB,
    }


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def fmt(v, digits=1):
    if v is None:
        return "–"
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    return f"{v:.{digits}f}"


def unit(scenario):
    return {"pull": "MB/s", "push": "MB/s", "ci": "jobs/s"}.get(scenario, "req/s")


def load(results_path):
    runs = {}
    with open(results_path, newline="") as f:
        for line in csv.DictReader(f, delimiter="\t"):
            try:
                report = json.loads(Path(line["json"]).read_text())
            except (OSError, ValueError):
                report = None
            key = (line["phase"], line["scenario"])
            runs.setdefault(key, {}).setdefault(line["target"], []).append(
                (report, float(line["cpu_s"]), int(line["rss_kib"]), int(line["exit"]))
            )
    return runs


def summarize(runs):
    """(phase, scenario) -> target -> medians."""
    out = {}
    for key, targets in runs.items():
        out[key] = {}
        for target, reps in targets.items():
            ms = [measure(r, cpu) for r, cpu, _, _ in reps if r is not None]
            if not ms:
                continue
            s = {k: median([m[k] for m in ms]) for k in ms[0]}
            s["errors"] = sum(m["errors"] for m in ms)
            s["rss_mib"] = max(rss for _, _, rss, _ in reps) / 1024.0
            s["reps"] = len(ms)
            s["failed_runs"] = sum(1 for *_, rc in reps if rc not in (0, 3))
            out[key][target] = s
    return out


def best_peer(rows, peers):
    present = [p for p in peers if p in rows and rows[p]["throughput"]]
    return max(present, key=lambda p: rows[p]["throughput"]) if present else None


def ratio(a, b):
    return a / b if a is not None and b else None


def table(key, rows):
    phase, scenario = key
    lines = [f"### {TITLES.get(key, f'{phase} {scenario}')}", ""]
    blobs = scenario in ("pull", "push", "ci")
    head = ["target", unit(scenario)]
    if scenario == "ci":
        head.append("req/s")
    head += ["p99 ms", "× direct"]
    per_request = scenario not in ("pull", "push")
    head += ["proxy CPU-s/GiB"] if blobs else []
    head += ["proxy CPU-s/10k req", "µs CPU/req"] if per_request else []
    head += ["peak RSS MiB", "errors"]
    lines.append("| " + " | ".join(head) + " |")
    lines.append("|" + "---|" * len(head))
    direct = rows.get("direct", {}).get("throughput")
    for target in LABELS:
        if target not in rows:
            continue
        r = rows[target]
        proxy = target != "direct"
        cells = [LABELS.get(target, target), fmt(r["throughput"])]
        if scenario == "ci":
            cells.append(fmt(r["req_s"]))
        cells += [fmt(r["p99_ms"], 2), fmt(ratio(r["throughput"], direct), 2)]
        if blobs:
            cells.append(fmt(r["cpu_per_gib"], 2) if proxy else "–")
        if per_request:
            cells += [
                fmt(r["cpu_per_10k"], 2) if proxy else "–",
                fmt(r["cpu_us_per_req"], 1) if proxy else "–",
            ]
        cells += [fmt(r["rss_mib"], 1) if proxy else "–", str(r["errors"])]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    notes = []
    peer = best_peer(rows, PEERS_TLS)
    if "regproxy" in rows and peer:
        rp, bp = rows["regproxy"], rows[peer]
        notes.append(
            f"regproxy / best TLS peer ({LABELS[peer]}): throughput "
            f"{fmt(ratio(rp['throughput'], bp['throughput']), 2)}×"
            + (
                f", CPU per request {fmt(ratio(rp['cpu_us_per_req'], bp['cpu_us_per_req']), 2)}×"
                if per_request
                else ""
            )
            + (
                f", CPU per GiB {fmt(ratio(rp['cpu_per_gib'], bp['cpu_per_gib']), 2)}×"
                if blobs
                else ""
            )
            + f", p99 {fmt(ratio(rp['p99_ms'], bp['p99_ms']), 2)}×."
        )
    if "regproxy-plain" in rows and "haproxy-plain" in rows:
        rp, hp = rows["regproxy-plain"], rows["haproxy-plain"]
        notes.append(
            f"regproxy plain / HAProxy plain: throughput "
            f"{fmt(ratio(rp['throughput'], hp['throughput']), 2)}×"
            + (
                f", CPU per request {fmt(ratio(rp['cpu_us_per_req'], hp['cpu_us_per_req']), 2)}×"
                if per_request
                else ""
            )
            + (
                f", CPU per GiB {fmt(ratio(rp['cpu_per_gib'], hp['cpu_per_gib']), 2)}×"
                if blobs
                else ""
            )
            + "."
        )
    if "regproxy" in rows and "tuned-noauth" in rows:
        rp, tn = rows["regproxy"], rows["tuned-noauth"]
        notes.append(
            f"regproxy (bcrypt auth, cached) / nginx tuned without auth: throughput "
            f"{fmt(ratio(rp['throughput'], tn['throughput']), 2)}×, p99 "
            f"{fmt(ratio(rp['p99_ms'], tn['p99_ms']), 2)}×."
        )
    lines += [f"- {n}" for n in notes]
    lines.append("")
    return lines


def goals(s):
    """The targets of issue 3, each as measured and whether it is met."""
    out = []

    def get(phase, scenario, target, field):
        return s.get((phase, scenario), {}).get(target, {}).get(field)

    for scenario in ("push", "pull"):
        rp = get("registry", scenario, "regproxy", "throughput")
        d = get("registry", scenario, "direct", "throughput")
        r = ratio(rp, d)
        out.append((f"{scenario} through regproxy (TLS) ≥ 0.97× direct", fmt(r, 2) + "×", r is not None and r >= 0.97))
    for scenario in ("push", "pull"):
        c = get("registry", scenario, "regproxy", "cpu_per_gib")
        peers = [get("registry", scenario, p, "cpu_per_gib") for p in PEERS_TLS]
        peers = [p for p in peers if p]
        best = min(peers) if peers else None
        ok = c is not None and c <= 0.8 and (best is None or c <= best / 2)
        out.append(
            (f"{scenario} through TLS ≤ 0.8 CPU-s/GiB and ≤ half the best peer ({fmt(best, 2)})", fmt(c, 2), ok)
        )
    for scenario in ("push", "pull"):
        c = get("registry", scenario, "regproxy-plain", "cpu_per_gib")
        out.append((f"{scenario} in plain mode with splice ≤ 0.25 CPU-s/GiB", fmt(c, 2), c is not None and c <= 0.25))
    us = get("origin", "ping", "regproxy", "cpu_us_per_req")
    out.append(("≤ 16 µs proxy CPU per authenticated request (bcrypt, warm cache; origin ping)", fmt(us, 1) + " µs", us is not None and us <= 16))
    rp = get("origin", "ping", "regproxy", "throughput")
    tn = get("origin", "ping", "tuned-noauth", "throughput")
    p_rp = get("origin", "ping", "regproxy", "p99_ms")
    p_tn = get("origin", "ping", "tuned-noauth", "p99_ms")
    r = ratio(rp, tn)
    out.append(
        (
            "≥ 1.5× the request rate of tuned nginx without auth (origin ping), p99 no worse",
            f"{fmt(r, 2)}×, p99 {fmt(p_rp, 2)} vs {fmt(p_tn, 2)} ms",
            r is not None and r >= 1.5 and p_rp is not None and p_tn is not None and p_rp <= p_tn,
        )
    )
    us_h = get("origin", "ping", "haproxy-noauth", "cpu_us_per_req")
    r = ratio(us, us_h)
    out.append(
        (
            "issue 8: ≤ 0.7× the CPU per request of HAProxy without auth (origin ping, TLS)",
            f"{fmt(r, 2)}×; {fmt(us, 1)} vs {fmt(us_h, 1)} µs",
            r is not None and r <= 0.7,
        )
    )
    return out


def svg(s):
    """Throughput relative to direct, one group of bars per scenario."""
    groups = [(k, s[k]) for k in TITLES if k in s]
    colors = {
        "recipe": "#d62728",
        "tuned": "#ff7f0e",
        "tuned-noauth": "#bcbd22",
        "haproxy": "#9467bd",
        "haproxy-noauth": "#8c564b",
        "regproxy": "#1f77b4",
        "haproxy-plain": "#c5b0d5",
        "regproxy-plain": "#aec7e8",
    }
    bar_h, gap, left, width = 14, 26, 330, 420
    height = 60 + sum(len([t for t in rows if t in colors]) * bar_h + gap for _, rows in groups)
    scale_max = 1.5
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{left + width + 90}" height="{height}" '
        'font-family="sans-serif" font-size="11">',
        '<rect width="100%" height="100%" fill="white"/>',
        f'<text x="10" y="20" font-size="14" font-weight="bold">Throughput relative to direct '
        "(median; 1.0 = no proxy)</text>",
    ]
    y = 40
    x1 = left + width / scale_max
    for key, rows in groups:
        parts.append(f'<text x="10" y="{y + 10}" font-weight="bold">{TITLES[key]}</text>')
        y += 14
        direct = rows.get("direct", {}).get("throughput")
        for target in LABELS:
            if target not in colors or target not in rows:
                continue
            r = ratio(rows[target]["throughput"], direct) or 0.0
            w = min(r, scale_max) / scale_max * width
            parts.append(f'<text x="{left - 6}" y="{y + 11}" text-anchor="end">{LABELS.get(target, target)}</text>')
            parts.append(
                f'<rect x="{left}" y="{y + 1}" width="{w:.1f}" height="{bar_h - 3}" fill="{colors[target]}"/>'
            )
            parts.append(f'<text x="{left + w + 4:.1f}" y="{y + 11}">{r:.2f}×</text>')
            y += bar_h
        y += gap - 14
    parts.append(f'<line x1="{x1:.1f}" y1="34" x2="{x1:.1f}" y2="{y}" stroke="#444" stroke-dasharray="3,3"/>')
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


BULK_ROWS = {
    "get": "GET blob to /dev/null",
    "put": "PUT -T FILE (Content-Length)",
    "put-chunked": "PUT -T - (Transfer-Encoding: chunked)",
    "put-origin": "PUT -T FILE against regbench's origin, which drops uploads: each front's own ceiling",
    "put-chunked-origin": "PUT -T - chunked against the origin: each front's own ceiling",
}
# The rows issue 8's goals name; the `-origin` rows are shown beside them.
GOAL_ROWS = ["get", "put", "put-chunked"]
BULK_TARGETS = ["direct", "tuned", "haproxy", "regproxy", "tuned-plain", "haproxy-plain", "regproxy-plain"]
BULK_LABELS = dict(LABELS, **{"tuned-plain": "nginx tuned plain", "haproxy-plain": "HAProxy plain, forced splice"})
BULK_PEERS = {"regproxy": ["tuned", "haproxy"], "regproxy-plain": ["tuned-plain", "haproxy-plain"]}


def load_bulk(path):
    """row -> target -> list of runs (dicts of floats), failed runs left out."""
    out = {}
    with open(path, newline="") as f:
        for line in csv.DictReader(f, delimiter="\t"):
            if line["exit"] != "0" or float(line["seconds"]) <= 0:
                continue
            run = {k: float(v) for k, v in line.items() if k not in ("row", "target", "rep", "exit")}
            run["rep"] = int(line["rep"])
            out.setdefault(line["row"], {}).setdefault(line["target"], []).append(run)
    return out


def bulk_summary(runs):
    """row -> target -> medians: MiB/s, CPU-s/GiB in total, user, sys and per thread kind."""
    out = {}
    for row, targets in runs.items():
        for target, reps in targets.items():
            per = []
            for r in reps:
                gib = r["bytes"] / GIB
                per.append(
                    {
                        "mib_s": r["bytes"] / (1 << 20) / r["seconds"],
                        "cpu": (r["user_s"] + r["sys_s"]) / gib,
                        "user": r["user_s"] / gib,
                        "sys": r["sys_s"] / gib,
                        "worker": r["worker_s"] / gib,
                        "hash": r["hash_s"] / gib,
                        "iouwrk": (r["iouwrk_s"] + r["exited_s"]) / gib,
                        "other": r["other_s"] / gib,
                        "rss_mib": r.get("rss_kib", 0.0) / 1024,
                        # Older tables lack these two columns.
                        "registry": r.get("registry_s", 0.0) / gib,
                        "client": r.get("client_s", 0.0) / gib,
                    }
                )
            out.setdefault(row, {})[target] = {k: median([p[k] for p in per]) for k in per[0]} | {
                "reps": len(per),
                # Peak, not median: the bound is on the worst run.
                "rss_mib": max(p["rss_mib"] for p in per),
                # Each repetition's seconds, to pair fronts run in the same one.
                "seconds_by_rep": {r["rep"]: r["seconds"] for r in reps},
            }
    return out


def faster_in(b, row, target, peer):
    """In how many repetitions `target` moved the row's blob faster than
    `peer` did in the same repetition, and of how many. Behind the registry
    two fronts can tie, and a median then says less than the pairs do."""
    mine = b.get(row, {}).get(target, {}).get("seconds_by_rep", {})
    theirs = b.get(row, {}).get(peer, {}).get("seconds_by_rep", {})
    pairs = [(mine[k], theirs[k]) for k in mine if k in theirs]
    return sum(a < t for a, t in pairs), len(pairs)


def pairs_text(b, row, target, peer):
    won, n = faster_in(b, row, target, peer)
    return f"; faster in {won} of {n} repetitions" if n else ""


def bulk_tables(b, storage=""):
    if not b:
        return []
    md = [
        "### Bulk transfers with curl (`curl --http1.1`, real registry, one client)",
        "",
        "CPU-s/GiB is the proxy's user+system CPU per GiB moved; regproxy's is split by thread "
        "kind (worker, hash, io_uring io-wq `iou-wrk` including workers that exited during the "
        "transfer). The ratio compares regproxy with the best peer of the same mode (TLS or plain) "
        "by CPU-s/GiB. Peak RSS is the sum of VmHWM over the front's processes, reset before each "
        "transfer, highest over the repetitions (HAProxy's plain and TLS fronts are one process). "
        "Registry and curl: their CPU-s/GiB during the same transfer. An upload whose registry "
        "CPU-seconds come close to its seconds is bounded by the registry, not the front. The "
        "upload rows run again against regbench's origin, which reads uploads and drops them, "
        "to show each front's own ceiling; there the registry column is the origin's CPU.",
        "",
    ]
    if storage:
        md += [f"The registry's storage for these rows: {storage}.", ""]
    for row, title in BULK_ROWS.items():
        if row not in b:
            continue
        rows = b[row]
        md += [
            f"#### {title}",
            "",
            "| front | MiB/s | CPU-s/GiB | user | sys | regproxy worker / hash / iou-wrk | vs best peer | peak RSS MiB | registry | curl |",
            "|---|---:|---:|---:|---:|---|---:|---:|---:|---:|",
        ]
        for t in BULK_TARGETS:
            if t not in rows:
                continue
            r = rows[t]
            kinds = ""
            vs = ""
            if t.startswith("regproxy"):
                kinds = f"{fmt(r['worker'], 2)} / {fmt(r['hash'], 2)} / {fmt(r['iouwrk'], 2)}"
                peers = [p for p in BULK_PEERS[t] if p in rows and rows[p]["cpu"]]
                if peers:
                    best = min(peers, key=lambda p: rows[p]["cpu"])
                    vs = f"{fmt(ratio(r['cpu'], rows[best]['cpu']), 2)}× {BULK_LABELS[best]}"
            cpu = "–" if t == "direct" else fmt(r["cpu"], 2)
            user = "–" if t == "direct" else fmt(r["user"], 2)
            sys_ = "–" if t == "direct" else fmt(r["sys"], 2)
            rss = "–" if t == "direct" else fmt(r["rss_mib"], 1)
            reg = fmt(r["registry"], 2) if r["registry"] else "–"
            client = fmt(r["client"], 2) if r["client"] else "–"
            md.append(
                f"| {BULK_LABELS.get(t, t)} | {fmt(r['mib_s'], 0)} | {cpu} | {user} | {sys_} | {kinds} | {vs} | {rss} | {reg} | {client} |"
            )
        md.append("")
    return md


def bulk_goals(b):
    """The bulk targets of issue 8, each as measured and whether it is met."""
    out = []

    def get(row, target, field):
        return b.get(row, {}).get(target, {}).get(field)

    c, h = get("get", "regproxy-plain", "cpu"), get("get", "haproxy-plain", "cpu")
    t, ht = get("get", "regproxy-plain", "mib_s"), get("get", "haproxy-plain", "mib_s")
    ok = None not in (c, h, t, ht) and c <= h and c <= 0.2 and t >= ht
    out.append(
        (
            "GET plain: CPU-s/GiB ≤ HAProxy forced splice's and ≤ 0.2; MiB/s ≥ HAProxy's",
            f"{fmt(c, 2)} vs {fmt(h, 2)}; {fmt(t, 0)} vs {fmt(ht, 0)} MiB/s"
            + pairs_text(b, "get", "regproxy-plain", "haproxy-plain"),
            ok,
        )
    )
    c, h = get("put", "regproxy-plain", "cpu"), get("put", "haproxy-plain", "cpu")
    out.append(
        (
            "PUT (Content-Length) plain: CPU-s/GiB ≤ HAProxy forced splice's",
            f"{fmt(c, 2)} vs {fmt(h, 2)}",
            None not in (c, h) and c <= h,
        )
    )
    c = get("put-chunked", "regproxy-plain", "cpu")
    out.append(("chunked PUT plain: ≤ 0.35 CPU-s/GiB", fmt(c, 2), c is not None and c <= 0.35))
    for row in GOAL_ROWS:
        c, h = get(row, "regproxy", "cpu"), get(row, "haproxy", "cpu")
        t, ht = get(row, "regproxy", "mib_s"), get(row, "haproxy", "mib_s")
        r = ratio(c, h)
        out.append(
            (
                f"{row} TLS: ≤ 0.75× HAProxy's CPU-s/GiB, MiB/s ≥ HAProxy's",
                f"{fmt(r, 2)}×; {fmt(t, 0)} vs {fmt(ht, 0)} MiB/s" + pairs_text(b, row, "regproxy", "haproxy"),
                None not in (r, t, ht) and r <= 0.75 and t >= ht,
            )
        )
    for row in ("put", "put-chunked"):
        t, ht = get(row + "-origin", "regproxy", "mib_s"), get(row + "-origin", "haproxy", "mib_s")
        reg, rate = get(row, "regproxy", "registry"), get(row, "regproxy", "mib_s")
        if None in (t, ht):
            continue
        # Not an issue 8 goal: what the rate above is bounded by.
        bound = ""
        if reg and rate:
            bound = f"; the registry behind regproxy ran {fmt(reg * rate / 1024, 2)} CPU-s per second of upload"
        out.append(
            (
                f"{row} TLS against the origin (no registry): MiB/s ≥ HAProxy's",
                f"{fmt(t, 0)} vs {fmt(ht, 0)} MiB/s{bound}",
                t >= ht,
            )
        )
    peaks = [get(row, t, "rss_mib") for row in BULK_ROWS for t in ("regproxy", "regproxy-plain")]
    peaks = [p for p in peaks if p]
    peak = max(peaks) if peaks else None
    out.append(("peak RSS of regproxy < 16 MiB (VmHWM, every bulk row)", f"{fmt(peak, 1)} MiB", peak is not None and peak < 16))
    return out


TOKEN_BACKENDS = {"tokens-registry": "real registry", "tokens-origin": "fast origin"}
TOKEN_FRONTS = {"regproxy": "cached Basic", "regproxy-bearer": "Bearer tokens (ES256)"}
ISSUERS = {"issue-es256": "ES256 (P-256)", "issue-eddsa": "EdDSA (Ed25519)"}
# The ratio issue 26 bounds: Bearer over cached Basic, proxy CPU per request.
TOKEN_CPU_GOAL = 1.1


def load_jwt(path):
    """case name -> {"op", "median_us": [...], "p90_us": [...]} over the runs."""
    out = {}
    if not path:
        return out
    with open(path, newline="") as f:
        for line in csv.DictReader(f, delimiter="\t"):
            try:
                report = json.loads(Path(line["json"]).read_text())
            except (OSError, ValueError):
                continue
            for c in report["cases"]:
                e = out.setdefault(f"{c['op']} {c['name']}", {"n": c["n"], "runs": 0, "median_us": [], "p90_us": []})
                e["runs"] += 1
                e["median_us"].append(c["median_us"])
                e["p90_us"].append(c["p90_us"])
    return {k: {"n": v["n"], "runs": v["runs"], "median_us": median(v["median_us"]), "p90_us": median(v["p90_us"])} for k, v in out.items()}


def token_ratio(s, phase):
    rows = s.get((phase, "ci"), {})
    b, t = rows.get("regproxy", {}), rows.get("regproxy-bearer", {})
    return ratio(t.get("cpu_us_per_req"), b.get("cpu_us_per_req"))


def token_tables(s, jwt):
    """The Bearer token section: CI mix, issuance, first verification."""
    md = []
    ci = [(p, s[(p, "ci")]) for p in TOKEN_BACKENDS if (p, "ci") in s]
    issue = s.get(("tokens", "token"), {})
    if not (ci or issue or jwt):
        return md
    md += ["### Bearer tokens", ""]
    if ci:
        md += [
            "The CI mix (`regbench ci`, TLS) through regproxy with cached Basic credentials, and through a "
            "regproxy alike but for `[auth] scheme = \"bearer\"` driven by `regbench ci --token-auth` (a token "
            "per repository and client, fetched with Basic credentials and kept until `expires_in` is near), "
            "alternating in one run. Proxy CPU per request counts every request, the `/token` ones included.",
            "",
            "| upstream | front | jobs/s | req/s | p99 ms (job) | µs CPU/req | peak RSS MiB | errors |",
            "|---|---|---:|---:|---:|---:|---:|---:|",
        ]
        for phase, rows in ci:
            for t, label in TOKEN_FRONTS.items():
                if t in rows:
                    r = rows[t]
                    md.append(
                        f"| {TOKEN_BACKENDS[phase]} | {label} | {fmt(r['throughput'])} | {fmt(r['req_s'])} | "
                        f"{fmt(r['p99_ms'], 2)} | {fmt(r['cpu_us_per_req'], 1)} | {fmt(r['rss_mib'], 1)} | {r['errors']} |"
                    )
        md.append("")
        for phase, _ in ci:
            md.append(
                f"- {TOKEN_BACKENDS[phase]}: Bearer / cached Basic, proxy CPU per request "
                f"{fmt(token_ratio(s, phase), 3)}×."
            )
        md.append("")
    if issue:
        md += [
            "`GET /token` (`regbench token`: one scope, cached Basic credentials, TLS keep-alive) of a regproxy "
            "with `workers = 1`. Tokens per CPU-second is the rate one fully used core would give; core use is "
            "the proxy's CPU-seconds over the run's seconds (the client shares the machine).",
            "",
            "| signing key | tokens/s | µs CPU/token | tokens per CPU-second | core use | p99 ms | errors |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        for t, label in ISSUERS.items():
            if t in issue:
                r = issue[t]
                per_cpu = 1e6 / r["cpu_us_per_req"] if r["cpu_us_per_req"] else None
                use = ratio(r["cpu_s"], r["elapsed_s"])
                md.append(
                    f"| {label} | {fmt(r['req_s'])} | {fmt(r['cpu_us_per_req'], 1)} | {fmt(per_cpu)} | "
                    f"{fmt(use, 2)} | {fmt(r['p99_ms'], 2)} | {r['errors']} |"
                )
        md.append("")
    if jwt:
        runs = max(v["runs"] for v in jwt.values())
        n = max(v["n"] for v in jwt.values())
        md += [
            f"A first verification, of a token never seen before (`regbench jwt-verify`: {n} distinct tokens per "
            f"case, each timed; medians over {runs} runs). regproxy tokens: `TokenVerifier::verify`; OIDC: "
            "`oidc::select` and `Provider::verify` with the user and group templates. `issue` rows: "
            "`TokenIssuer::issue`, the signing half of `/token`.",
            "",
            "| case | median µs | p90 µs |",
            "|---|---:|---:|",
        ]
        for name, v in jwt.items():
            md.append(f"| {name} | {fmt(v['median_us'], 1)} | {fmt(v['p90_us'], 1)} |")
        md.append("")
    return md


def token_goals(s):
    """Issue 26's performance bound, per upstream."""
    out = []
    for phase, backend in TOKEN_BACKENDS.items():
        r = token_ratio(s, phase)
        if r is None:
            continue
        out.append(
            (
                f"CI mix with Bearer tokens ≤ {TOKEN_CPU_GOAL}× the proxy CPU per request of cached Basic ({backend})",
                f"{fmt(r, 3)}×",
                r <= TOKEN_CPU_GOAL,
            )
        )
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--results", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--date", required=True)
    ap.add_argument("--machine", required=True)
    ap.add_argument("--versions", required=True)
    ap.add_argument("--command", required=True)
    ap.add_argument("--elapsed", required=True)
    ap.add_argument("--load", default="")
    ap.add_argument("--bulk", default=None)
    ap.add_argument("--bulk-storage", default="")
    ap.add_argument("--jwt", default=None)
    a = ap.parse_args()
    s = summarize(load(a.results))
    md = [
        "## Results",
        "",
        f"- date: {a.date}",
        f"- machine: {a.machine}",
        f"- peers: {a.versions}",
        f"- command: `{a.command}` ({a.elapsed} s of measurement)",
        f"- load average before and after: {a.load}",
        "- medians over the repetitions; proxy CPU = utime+stime of all the proxy's processes "
        "during the run; peak RSS = sum of VmHWM, reset before each run.",
        "",
    ]
    for key in TITLES:
        if key in s:
            md += table(key, s[key])
    bulk = bulk_summary(load_bulk(a.bulk)) if a.bulk else {}
    md += bulk_tables(bulk, a.bulk_storage)
    jwt = load_jwt(a.jwt)
    md += token_tables(s, jwt)
    if any(key in TITLES for key in s):
        md += ["### Goals (issue 3)", "", "| goal | measured | met |", "|---|---|---|"]
        for goal, measured, ok in goals(s):
            md.append(f"| {goal} | {measured} | {'yes' if ok else '**no**'} |")
        md.append("")
    if token_goals(s):
        md += ["### Token goals (issue 26)", "", "| goal | measured | met |", "|---|---|---|"]
        for goal, measured, ok in token_goals(s):
            md.append(f"| {goal} | {measured} | {'yes' if ok else '**no**'} |")
        md.append("")
    if bulk:
        md += ["### Bulk goals (issue 8)", "", "| goal | measured | met |", "|---|---|---|"]
        for goal, measured, ok in bulk_goals(bulk):
            md.append(f"| {goal} | {measured} | {'yes' if ok else '**no**'} |")
        md.append("")
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.md").write_text("\n".join(md))
    (out / "chart.svg").write_text(svg(s))
    (out / "summary.json").write_text(
        json.dumps(
            {f"{p}/{sc}": rows for (p, sc), rows in s.items()}
            | {f"bulk/{r}": v for r, v in bulk.items()}
            | {f"jwt/{k}": v for k, v in jwt.items()},
            indent=1,
            sort_keys=True,
        )
    )
    print("\n".join(md))


if __name__ == "__main__":
    main()
