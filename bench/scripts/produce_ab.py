#!/usr/bin/env python3
"""A/B of single-node produce between two `spate` binaries, alternated round by round.

Each round and side: a fresh broker (`--cores 1`, pinned to CPU 0) on a fresh data dir under
target/bench, then `spate bench produce` (the AFTER binary's client, pinned to CPU 1) for each
acks setting (in this order, on the same broker); throughput, latency percentiles and the broker's
peak RSS so far per run, medians and AFTER/BEFORE ratios.

Usage: bench/scripts/produce_ab.py BEFORE AFTER [--rounds 4] [--duration-s 10] [--rate 100MB/s]
       [--acks 1,all] [--broker-cores 1] [--json OUT]
(--rate: a fixed offered load, to compare latency at the same throughput; default unlimited.
--broker-cores 2: two shards on CPUs 0-1, so requests cross shards; the client shares them.
A run whose broker or client fails is recorded as failed and left out of the medians.)
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


class PeakRss:
    """Samples a process's resident memory every 100 ms while in a `with` block."""

    def __init__(self, pid):
        import threading
        self.pid, self.peak, self.stop = pid, 0, threading.Event()
        self.thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self):
        while not self.stop.wait(0.1):
            try:
                with open(f"/proc/{self.pid}/status") as f:
                    kib = next(int(l.split()[1]) for l in f if l.startswith("VmRSS:"))
                self.peak = max(self.peak, kib)
            except (OSError, StopIteration):
                return

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *_):
        self.stop.set()
        self.thread.join()


def run_side(binary, client, acks_list, duration_s, port, rate=None, cores=1):
    data = os.path.join(ROOT, "target", "bench", "produce-ab")
    shutil.rmtree(data, ignore_errors=True)
    os.makedirs(data)
    log = open(os.path.join(ROOT, "target", "bench", "produce-ab.log"), "a")
    cpus = "0" if cores == 1 else f"0-{cores - 1}"
    broker = subprocess.Popen(["taskset", "-c", cpus, binary, "start", "--data-dir", data, "--listen",
                               f"127.0.0.1:{port}", "--admin-listen", "none", "--cores", str(cores)],
                              stdout=subprocess.PIPE, stderr=log, text=True)
    try:
        for line in broker.stdout:
            if "ready" in line:
                break
        out = {}
        for acks in acks_list:
            result = os.path.join(data, f"result-{acks}.json")
            with PeakRss(broker.pid) as rss:
                run = subprocess.run([client, "bench", "produce", "--brokers", f"127.0.0.1:{port}", "--topic",
                                      f"ab-{acks}", "--partitions", "8", "--record-bytes", "1024", "--acks", acks,
                                      "--duration-s", str(duration_s), "--warmup-s", "2", "--client-cores", "1",
                                      "--quiet", "--json", result] + (["--rate", rate] if rate else []),
                                     stdout=subprocess.DEVNULL)
            if run.returncode != 0 or broker.poll() is not None:
                out[acks] = {"failed": True, "client_rc": run.returncode, "broker_rc": broker.poll()}
                continue
            r = json.load(open(result))["produce"]
            out[acks] = {"mb_per_s": r["mb_per_s"], "p50_us": r["latency_us"]["p50"],
                         "p99_us": r["latency_us"]["p99"], "load": os.getloadavg()[0],
                         "broker_peak_rss_mib": rss.peak // 1024}
        return out
    finally:
        broker.terminate()
        broker.wait(30)


def main():
    from ab_rounds import alternated
    from conftest import free_port

    ap = argparse.ArgumentParser()
    ap.add_argument("before")
    ap.add_argument("after")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--duration-s", type=int, default=10)
    ap.add_argument("--acks", default="1,all")
    ap.add_argument("--rate", help="offered load, e.g. 100MB/s (default: unlimited)")
    ap.add_argument("--broker-cores", type=int, default=1)
    ap.add_argument("--json")
    args = ap.parse_args()
    acks_list = args.acks.split(",")
    runs = []
    for round_, name, binary in alternated(args.rounds, args.before, args.after):
        result = run_side(binary, args.after, acks_list, args.duration_s, free_port(), args.rate,
                          args.broker_cores)
        runs.append({"round": round_, "side": name, **result})
        print(json.dumps(runs[-1]), flush=True)
    summary = {}
    for acks in acks_list:
        ok = {side: [r[acks] for r in runs if r["side"] == side and not r[acks].get("failed")]
              for side in ("before", "after")}
        failed = {side: sum(1 for r in runs if r["side"] == side and r[acks].get("failed"))
                  for side in ("before", "after")}
        if not ok["before"] or not ok["after"]:
            summary[acks] = {"failed_runs": failed}
            continue
        med = {side: {k: statistics.median(r[k] for r in ok[side]) for k in ("mb_per_s", "p50_us", "p99_us", "broker_peak_rss_mib")
                     if all(k in r for r in ok[side])}
               for side in ("before", "after")}
        summary[acks] = {**med, "throughput_ratio": med["after"]["mb_per_s"] / med["before"]["mb_per_s"],
                         "p99_ratio": med["after"]["p99_us"] / med["before"]["p99_us"], "failed_runs": failed}
    record = {"date": time.strftime("%Y-%m-%d"), "machine": f"{os.cpu_count()} cores", "before": args.before,
              "after": args.after, "settings": {"partitions": 8, "record_bytes": 1024, "broker_cores": args.broker_cores,
                                                "duration_s": args.duration_s, "rate": args.rate or "unlimited",
                                                "fsync": "acks=all fdatasync"},
              "runs": runs, "summary": summary}
    print(json.dumps(summary, indent=1))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(record, f, indent=1)


if __name__ == "__main__":
    main()
