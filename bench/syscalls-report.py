#!/usr/bin/env python3
"""System calls per GiB of each bulk row and front, from bench/compare's
syscalls.tsv (COMPARE_BULK_SYSCALLS=1): rows of `row target rep bytes
syscall count`. Prints a markdown table of medians over the repetitions:
all calls per GiB, the front's wake-ups per GiB (its context switches,
the pseudo-call `wakeups`, not counted as a call), then the largest kinds."""

import statistics
import sys
from collections import defaultdict

GIB = 1 << 30
WAKEUPS = "wakeups"


def main(path):
    # (row, target) -> rep -> {syscall: count}, and rep -> bytes
    counts = defaultdict(lambda: defaultdict(dict))
    sizes = {}
    with open(path) as f:
        for line in f:
            row, target, rep, size, call, n = line.rstrip("\n").split("\t")
            counts[(row, target)][rep][call] = int(n)
            sizes[(row, target, rep)] = int(size or 0)
    print("| row | front | system calls per GiB | wake-ups per GiB | largest, per GiB |")
    print("|---|---|---:|---:|---|")
    for (row, target), reps in sorted(counts.items()):
        per_gib = defaultdict(list)
        totals = []
        for rep, calls in reps.items():
            size = sizes[(row, target, rep)]
            if size <= 0:
                continue
            scale = GIB / size
            totals.append(sum(n for c, n in calls.items() if c != WAKEUPS) * scale)
            for call, n in calls.items():
                per_gib[call].append(n * scale)
        if not totals:
            continue
        med = {c: statistics.median(v + [0] * (len(totals) - len(v))) for c, v in per_gib.items()}
        wakeups = med.pop(WAKEUPS, None)
        woke = "–" if wakeups is None else f"{wakeups:,.0f}"
        top = sorted(med.items(), key=lambda kv: -kv[1])[:6]
        largest = ", ".join(f"{c} {v:,.0f}" for c, v in top if v >= 1)
        print(f"| {row} | {target} | {statistics.median(totals):,.0f} | {woke} | {largest} |")


if __name__ == "__main__":
    main(sys.argv[1])
