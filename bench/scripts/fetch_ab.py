#!/usr/bin/env python3
"""A/B of two `spate` binaries on the Fetch read path, same machine, same run: for each round
and each side (the order swapped every round), start the broker pinned to one core, produce a
topic, then read it from offset 0 to its end with `spate bench consume --to-end` (the AFTER
binary's client for both sides, pinned to another core) several times. Reports consume MB/s
and the broker's CPU time per GiB fetched (utime + stime from /proc, during the reads only),
median over rounds, with every round to show the noise.

Two sizes: `tail` fits the tail cache (8 partitions x 6 MiB < 8 MiB per partition), so the
reads copy out of the write chunks; `catchup` (1 GiB) is read from the segment files (page
cache, warm after the produce).

Usage: bench/scripts/fetch_ab.py BEFORE_BIN AFTER_BIN [--rounds 3] [--reads 3] [--json OUT]
"""

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SIZES = {"tail": 48 << 20, "catchup": 1 << 30}
BROKER_CPU, CLIENT_CPU = "0", "1"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_s(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start(binary, data_dir):
    shutil.rmtree(data_dir, ignore_errors=True)
    os.makedirs(data_dir)
    port = free_port()
    proc = subprocess.Popen(
        ["taskset", "-c", BROKER_CPU, binary, "start", "--cores", "1", "--data-dir", data_dir,
         "--listen", f"127.0.0.1:{port}", "--admin-listen", "none"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    for line in proc.stdout:
        if "ready" in line:
            break
    else:
        raise SystemExit(f"{binary} did not start")
    return proc, f"127.0.0.1:{port}"


def bench(client, mode, brokers, extra):
    result = os.path.join(ROOT, "target", "fetch-ab-result.json")
    out = subprocess.run(
        ["taskset", "-c", CLIENT_CPU, client, "bench", mode, "--brokers", brokers,
         "--topic", "fetch-ab", "--partitions", "8", "--record-bytes", "1024", "--quiet",
         "--client-cores", CLIENT_CPU, "--json", result] + extra, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"bench {mode} failed: {out.stderr[-2000:]}")
    return json.load(open(result))


def one_side(binary, client, size_bytes, reads):
    proc, brokers = start(binary, os.path.join(ROOT, "target", "fetch-ab-data"))
    try:
        bench(client, "produce", brokers, ["--acks", "1", "--total-bytes", str(size_bytes),
                                           "--duration-s", "300", "--warmup-s", "0"])
        results = []
        for _ in range(reads):
            before = cpu_s(proc.pid)
            r = bench(client, "consume", brokers, ["--to-end", "--duration-s", "300",
                                                    "--warmup-s", "0"])
            used = cpu_s(proc.pid) - before
            c = r["consume"]
            gib = c["mb_per_s"] * r["window_s"] * 1e6 / (1 << 30)
            results.append({"mb_per_s": c["mb_per_s"], "broker_cpu_s": used,
                            "broker_cpu_ms_per_gib": 1e3 * used / gib if gib else None})
        return results
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("before")
    ap.add_argument("after")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--reads", type=int, default=3)
    ap.add_argument("--json")
    args = ap.parse_args()
    sides = {"before": args.before, "after": args.after}
    rounds = []
    for i in range(args.rounds):
        order = ["before", "after"] if i % 2 == 0 else ["after", "before"]
        r = {size: {} for size in SIZES}
        for size, nbytes in SIZES.items():
            for side in order:
                r[size][side] = one_side(sides[side], args.after, nbytes, args.reads)
        r["loadavg_1m"] = os.getloadavg()[0]
        rounds.append(r)
        print(f"round {i + 1} ({' then '.join(order)}): {json.dumps(r)}", flush=True)
    summary = {}
    for size in SIZES:
        summary[size] = {}
        for side in sides:
            reads = [x for r in rounds for x in r[size][side]]
            summary[size][side] = {
                "mb_per_s_median": statistics.median(x["mb_per_s"] for x in reads),
                "broker_cpu_ms_per_gib_median": statistics.median(
                    x["broker_cpu_ms_per_gib"] for x in reads),
            }
        b, a = summary[size]["before"], summary[size]["after"]
        summary[size]["ratio_mb_per_s"] = a["mb_per_s_median"] / b["mb_per_s_median"]
        summary[size]["ratio_cpu_per_gib"] = (a["broker_cpu_ms_per_gib_median"]
                                              / b["broker_cpu_ms_per_gib_median"])
    print("| read | before MB/s | after MB/s | ratio | before broker CPU ms/GiB | after | ratio |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for size, s in summary.items():
        b, a = s["before"], s["after"]
        print(f"| {size} | {b['mb_per_s_median']:.0f} | {a['mb_per_s_median']:.0f} | "
              f"{s['ratio_mb_per_s']:.2f} | {b['broker_cpu_ms_per_gib_median']:.0f} | "
              f"{a['broker_cpu_ms_per_gib_median']:.0f} | {s['ratio_cpu_per_gib']:.2f} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"command": "bench/scripts/fetch_ab.py " + " ".join(sys.argv[1:]),
                       "sizes_bytes": SIZES, "broker_cpu": BROKER_CPU, "client_cpu": CLIENT_CPU,
                       "record_bytes": 1024, "partitions": 8, "acks": "1",
                       "rounds": rounds, "summary": summary}, f, indent=1)


if __name__ == "__main__":
    main()
