#!/usr/bin/env python3
"""Storage append vs the raw disk: runs the criterion bench `bench/benches/storage.rs`
(`PartitionLog::append` against glommio O_DIRECT sequential 1 MiB writes on the same
filesystem, same run) for several rounds, alternating the two in each round, and writes one
JSON record plus a markdown summary to perf-reports/.

Usage: bench/scripts/storage_report.py [--rounds 3]
"""

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
GROUP = "storage_append_vs_raw_disk"
BENCHES = ["raw_odirect/sync_at_end", "log_append/sync_at_end",
           "raw_odirect/sync_every_mib", "log_append/sync_every_mib"]


def run_round():
    subprocess.run(["cargo", "bench", "-q", "-p", "spate-bench", "--bench", "storage"],
                   cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    out = {}
    for bench in BENCHES:
        d = os.path.join(ROOT, "target", "criterion", GROUP, bench.replace("/", "_"), "new")
        est = json.load(open(os.path.join(d, "estimates.json")))
        meta = json.load(open(os.path.join(d, "benchmark.json")))
        nbytes = meta["throughput"]["Bytes"]
        out[bench] = nbytes / (est["median"]["point_estimate"] / 1e9) / 1e6  # MB/s
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--render", help="only rewrite the markdown of this JSON record")
    ap.add_argument("--reads", action="store_true",
                    help="the read benchmarks instead: tail cache vs catch-up from disk")
    args = ap.parse_args()
    if args.reads:
        return reads_report(args.rounds)
    if args.render:
        record = json.load(open(args.render))
        write_markdown(args.render[: -len(".json")], record)
        return
    rounds = [run_round() for _ in range(args.rounds)]
    med = {b: statistics.median(r[b] for r in rounds) for b in BENCHES}
    ratios = {
        mode: med[f"log_append/{mode}"] / med[f"raw_odirect/{mode}"]
        for mode in ("sync_at_end", "sync_every_mib")
    }
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                            capture_output=True, text=True).stdout.strip()
    date = datetime.date.today().isoformat()
    record = {
        "date": date, "commit": commit, "machine": platform.node(), "cpus": os.cpu_count(),
        "kernel": platform.release(),
        "bench": "bench/benches/storage.rs",
        "settings": {"iteration_bytes": 32 << 20, "batch": "16 records x (16 B key, 1024 B value)",
                     "raw_write_bytes": 1 << 20, "raw_writes_in_flight": {"sync_at_end": 4, "sync_every_mib": 1},
                     "filesystem": "target/bench-data (SPATE_BENCH_DIR)"},
        "rounds_mb_s": rounds, "median_mb_s": med, "log_over_raw": ratios,
        "command": f"bench/scripts/storage_report.py --rounds {args.rounds}",
    }
    base = os.path.join(ROOT, "perf-reports", f"{date}-storage-append-{commit}")
    with open(base + ".json", "w") as f:
        json.dump(record, f, indent=2)
    write_markdown(base, record)


def reads_report(rounds_n):
    benches = ["tail_cache", "catch_up_disk"]
    rounds = []
    for _ in range(rounds_n):
        subprocess.run(["cargo", "bench", "-q", "-p", "spate-bench", "--bench", "storage", "--",
                        "storage_read"], cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
        r = {}
        for bench in benches:
            d = os.path.join(ROOT, "target", "criterion", "storage_read", bench, "new")
            est = json.load(open(os.path.join(d, "estimates.json")))
            r[bench] = {"us_per_mib_read": est["median"]["point_estimate"] / 1e3}
        rounds.append(r)
    med = {b: statistics.median(r[b]["us_per_mib_read"] for r in rounds) for b in benches}
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                            capture_output=True, text=True).stdout.strip()
    date = datetime.date.today().isoformat()
    record = {"date": date, "commit": commit, "machine": platform.node(), "cpus": os.cpu_count(),
              "bench": "bench/benches/storage.rs (storage_read)",
              "settings": {"log_bytes": 64 << 20, "read_bytes": 1 << 20, "batch": "16 x 1 KiB records",
                           "cache_bytes_per_partition": 8 << 20},
              "rounds": rounds, "median_us_per_mib": med,
              "command": f"bench/scripts/storage_report.py --reads --rounds {rounds_n}"}
    base = os.path.join(ROOT, "perf-reports", f"{date}-storage-read-{commit}")
    with open(base + ".json", "w") as f:
        json.dump(record, f, indent=2)
    lines = [f"# Storage reads: tail cache vs catch-up ({date}, commit {commit})", "",
             "`PartitionLog::read` of 1 MiB from a 64 MiB log: from the tail cache (one copy out of "
             "the write chunks) vs from the segment files (checksums verified, one copy; segment reads go "
             "through the page cache, see storage/src/segment.rs, warm here).", "",
             "| read | µs per MiB | GB/s |", "| --- | --- | --- |"]
    for b in benches:
        lines.append(f"| {b} | {med[b]:.1f} | {(1 << 20) / (med[b] * 1e3):.1f} |")
    lines += ["", f"Reproduce: `{record['command']}`", ""]
    with open(base + ".md", "w") as f:
        f.write("\n".join(lines))
    print("\n".join(lines))


def write_markdown(base, record):
    date, commit, med, ratios = record["date"], record["commit"], record["median_mb_s"], record["log_over_raw"]
    rounds = record["rounds_mb_s"]
    lines = [
        f"# Storage append vs raw O_DIRECT disk ({date}, commit {commit})",
        "",
        "`PartitionLog::append` of 16 KiB batches (16 records of 1 KiB) vs glommio `DmaFile` "
        "sequential 1 MiB O_DIRECT writes from pre-filled buffers (4 in flight when synced at the "
        "end, 1 when synced every MiB) on the same filesystem, in the same criterion run, "
        f"{len(rounds)} rounds alternating the two; medians of criterion's per-iteration medians "
        "(32 MiB per iteration).",
        "",
        "| fsync | raw O_DIRECT MB/s | log append MB/s | log / raw |",
        "| --- | --- | --- | --- |",
    ]
    for mode, label in (("sync_at_end", "once per 32 MiB"), ("sync_every_mib", "every 1 MiB (acks=all group commit)")):
        lines.append(f"| {label} | {med[f'raw_odirect/{mode}']:.0f} | {med[f'log_append/{mode}']:.0f} | "
                     f"{ratios[mode]:.2f} |")
    lines += ["", "Every round (MB/s), to show the spread of this shared VM disk:", "",
              "| round | " + " | ".join(BENCHES) + " |", "| --- |" + " --- |" * len(BENCHES)]
    for i, r in enumerate(rounds):
        lines.append(f"| {i + 1} | " + " | ".join(f"{r[b]:.0f}" for b in BENCHES) + " |")
    lines += ["", f"Machine: {record['machine']}, {record['cpus']} CPUs (shared with other builds "
              f"during the run), kernel {record['kernel']}.", "",
              f"Reproduce: `{record['command']}`", ""]
    with open(base + ".md", "w") as f:
        f.write("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
