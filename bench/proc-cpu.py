#!/usr/bin/env python3
"""Prints the CPU clock ticks a set of processes have used so far, for
bench/compare's bulk table: one line

    user sys worker hash iou-wrk other

user and sys are the processes' totals (fields 14 and 15 of /proc/PID/stat,
which include threads that have exited). The kinds sum utime+stime of the
threads alive now (/proc/PID/task/*/stat), by thread name: regproxy-worker*,
regproxy-hash*, iou-wrk* (io_uring's io-wq workers), and everything else.
A thread that exits between two snapshots drops out of the kinds but not of
the totals, so (user+sys) - (sum of kinds) over an interval is the CPU of
threads that exited in it (for regproxy: io-wq workers that went idle).
"""

import os
import sys


def fields(path):
    """(comm, utime, stime) of one stat file, or None if it is gone."""
    try:
        with open(path) as f:
            stat = f.read()
    except OSError:
        return None
    comm = stat[stat.index("(") + 1 : stat.rindex(")")]
    rest = stat[stat.rindex(")") + 2 :].split()
    # rest[0] is field 3 (state): utime is field 14, stime field 15.
    return comm, int(rest[11]), int(rest[12])


def kind(comm):
    for prefix, name in (
        ("regproxy-worker", "worker"),
        ("regproxy-hash", "hash"),
        ("iou-wrk", "iou-wrk"),
    ):
        if comm.startswith(prefix):
            return name
    return "other"


def main(pids):
    user = system = 0
    kinds = {"worker": 0, "hash": 0, "iou-wrk": 0, "other": 0}
    for pid in pids:
        whole = fields(f"/proc/{pid}/stat")
        if whole is None:
            continue
        user += whole[1]
        system += whole[2]
        try:
            tasks = os.listdir(f"/proc/{pid}/task")
        except OSError:
            tasks = []
        for tid in tasks:
            t = fields(f"/proc/{pid}/task/{tid}/stat")
            if t is not None:
                kinds[kind(t[0])] += t[1] + t[2]
    print(user, system, kinds["worker"], kinds["hash"], kinds["iou-wrk"], kinds["other"])


if __name__ == "__main__":
    main(sys.argv[1:])
