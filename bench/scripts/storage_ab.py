#!/usr/bin/env python3
"""A/B of two builds of the storage criterion bench (`bench/benches/storage.rs`) on the same
machine in the same run: alternates the two executables round by round (before first in odd
rounds, after first in even ones) and reports the median MB/s of each benchmark (criterion's
per-run median), with every round to show the noise. `--each` runs every benchmark in a
process of its own, before and after back to back, so one side's earlier benchmarks cannot
leave the disk in another state (warm host caches, spent burst credits) for the other side's
later ones. Build each side with `cargo bench -p spate-bench --bench storage --no-run` and copy
the printed executable aside.

Usage: bench/scripts/storage_ab.py BEFORE_EXE AFTER_EXE [--rounds 3] [--filter REGEX]
       [--each] [--json OUT.json]
"""

import argparse
import json
import re
import statistics
import subprocess

UNITS = {"B/s": 1e-6, "KiB/s": 1024 / 1e6, "MiB/s": 1024 ** 2 / 1e6, "GiB/s": 1024 ** 3 / 1e6}


def run_once(exe, filt):
    proc = subprocess.run([exe, "--bench", filt], capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{exe} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    out = proc.stdout
    result, name = {}, None
    for line in out.splitlines():
        if re.match(r"^\S+/\S+", line):
            name = line.split()[0]
        m = re.search(r"thrpt:\s+\[\S+ \S+ (\S+) (\S+) ", line)
        if m and name and name not in result:
            result[name] = float(m.group(1)) * UNITS[m.group(2)]
    return result


def list_benchmarks(exe, filt):
    out = subprocess.run([exe, "--bench", "--list", filt], capture_output=True, text=True,
                         check=True).stdout
    return [line.rsplit(": ", 1)[0] for line in out.splitlines() if line.endswith(": benchmark")]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("before")
    ap.add_argument("after")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--filter", default="storage_append_vs_raw_disk")
    ap.add_argument("--each", action="store_true")
    ap.add_argument("--json")
    args = ap.parse_args()
    filters = [f"^{re.escape(n)}$" for n in list_benchmarks(args.before, args.filter)] \
        if args.each else [args.filter]
    rounds = []
    for i in range(args.rounds):
        sides = [("before", args.before), ("after", args.after)]
        if i % 2 == 1:
            sides.reverse()
        r = {side: {} for side, _ in sides}
        for filt in filters:
            for side, exe in sides:
                r[side].update(run_once(exe, filt))
        rounds.append(r)
        print(f"round {i + 1}: {json.dumps(r)}", flush=True)
    names = sorted(rounds[0]["before"])
    median = {side: {n: statistics.median(r[side][n] for r in rounds) for n in names}
              for side in ("before", "after")}
    print("| benchmark | before MB/s | after MB/s |")
    print("| --- | --- | --- |")
    for n in names:
        print(f"| {n} | {median['before'][n]:.0f} | {median['after'][n]:.0f} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rounds_mb_s": rounds, "median_mb_s": median,
                       "command": "bench/scripts/storage_ab.py " + " ".join(
                           f"{k}={v}" for k, v in vars(args).items())}, f, indent=2)


if __name__ == "__main__":
    main()
