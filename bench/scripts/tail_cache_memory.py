#!/usr/bin/env python3
"""Peak RSS of a broker with no consumer, with tail consumers, and with one lagging consumer,
for `spate` binaries side by side (issue 21: the tail cache follows its readers).

Each binary and case: a fresh broker (`--cores 1`, pinned to CPU 0) on a fresh data dir under
target/bench (removed afterwards), a topic of 8 partitions, then for `--duration-s` seconds
`spate bench` (the last binary's client, pinned to CPU 1) at `--rate`:
- `none`: `spate bench produce`, acks=1 (nobody reads);
- `tail`: `spate bench e2e`, acks=1 (one consumer per partition at the end of the log);
- `lagging`: first `--lag-mib` MiB produced, then `spate bench produce` as in `none` while one
  librdkafka consumer reads every partition from offset 0 at `--lag-rate-mb` MB/s (it stays
  behind, reading from disk).
Reports the broker's peak RSS (VmHWM), its RSS at the end and the tail cache it holds at the end
(sum of `spate_log_cache_bytes`), and the bench's throughput.

Usage: bench/scripts/tail_cache_memory.py BINARY... [--cases none,tail,lagging] [--rate 50MB/s]
       [--duration-s 12] [--json OUT]
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
import urllib.request

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from conftest import free_port  # noqa: E402
from memory_bounds import status_kib  # noqa: E402

PARTITIONS = 8


def status_mib(pid, field):
    return round(status_kib(pid, field) / 1024, 1)


def cache_bytes(admin):
    text = urllib.request.urlopen(admin + "/metrics", timeout=10).read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("spate_log_cache_bytes{"))


class Broker:
    def __init__(self, binary, name):
        self.binary = binary
        self.data = os.path.join(ROOT, "target", "bench", f"tail-memory-{name}")
        shutil.rmtree(self.data, ignore_errors=True)
        os.makedirs(self.data)
        self.port, admin_port = free_port(), free_port()
        self.bootstrap, self.admin = f"127.0.0.1:{self.port}", f"http://127.0.0.1:{admin_port}"
        self.proc = subprocess.Popen(
            ["taskset", "-c", "0", binary, "start", "--data-dir", self.data, "--listen", self.bootstrap,
             "--admin-listen", f"127.0.0.1:{admin_port}", "--cores", "1"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, start_new_session=True)
        for line in self.proc.stdout:
            if "ready" in line:
                break
        threading.Thread(target=lambda: [None for _ in self.proc.stdout], daemon=True).start()

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        shutil.rmtree(self.data, ignore_errors=True)


def bench(client, broker, mode, topic, args, *extra):
    out = os.path.join(broker.data, f"{mode}.json")
    cmd = ["taskset", "-c", "1", client, "bench", mode, "--brokers", broker.bootstrap, "--topic", topic,
           "--partitions", str(PARTITIONS), "--acks", "1", "--warmup-s", "2", "--quiet", "--json", out, *extra]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, timeout=600)
    with open(out) as f:
        return json.load(f)


def lagging_reader(bootstrap, topic, rate_mb, stop, read):
    from confluent_kafka import Consumer, TopicPartition
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "lagging", "enable.auto.commit": False,
                  "queued.max.messages.kbytes": 2048})
    c.assign([TopicPartition(topic, p, 0) for p in range(PARTITIONS)])
    started = time.time()
    while not stop.is_set():
        msg = c.poll(0.2)
        if msg is None or msg.error() is not None:
            continue
        read[0] += len(msg.value())
        ahead = read[0] / (rate_mb * 1e6) - (time.time() - started)
        if ahead > 0:
            time.sleep(ahead)
    c.close()


def run_case(binary, client, case, args):
    broker = Broker(binary, case)
    topic = f"memory-{case}"
    result = {"case": case}
    try:
        rate = ["--rate", args.rate, "--duration-s", str(args.duration_s)]
        if case == "none":
            out = bench(client, broker, "produce", topic, args, *rate)
        elif case == "tail":
            out = bench(client, broker, "e2e", topic, args, *rate)
        else:
            bench(client, broker, "produce", topic, args, "--total-bytes", str(args.lag_mib << 20),
                  "--duration-s", "120")
            stop, read = threading.Event(), [0]
            reader = threading.Thread(target=lagging_reader,
                                      args=(broker.bootstrap, topic, args.lag_rate_mb, stop, read))
            reader.start()
            try:
                out = bench(client, broker, "produce", topic, args, *rate)
            finally:
                stop.set()
                reader.join(30)
            result["lagging_read_mb"] = round(read[0] / 1e6, 1)
        result["produce_mb_per_s"] = round(out["produce"]["mb_per_s"], 1)
        result["cache_mib_at_end"] = round(cache_bytes(broker.admin) / (1 << 20), 1)
        result["rss_mib_at_end"] = status_mib(broker.proc.pid, "VmRSS")
        result["peak_rss_mib"] = status_mib(broker.proc.pid, "VmHWM")
    finally:
        broker.stop()
    return result


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("binaries", nargs="+")
    ap.add_argument("--cases", default="none,tail,lagging")
    ap.add_argument("--rate", default="50MB/s")
    ap.add_argument("--duration-s", type=int, default=12)
    ap.add_argument("--lag-mib", type=int, default=256)
    ap.add_argument("--lag-rate-mb", type=float, default=5.0)
    ap.add_argument("--json")
    args = ap.parse_args()
    client = args.binaries[-1]
    results = []
    for case in args.cases.split(","):
        for binary in args.binaries:
            r = run_case(binary, client, case, args)
            r["binary"] = binary
            print(json.dumps(r), flush=True)
            results.append(r)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rate": args.rate, "duration_s": args.duration_s, "results": results}, f, indent=1)


if __name__ == "__main__":
    main()
