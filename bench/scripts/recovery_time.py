#!/usr/bin/env python3
"""Time from exec to `ready` after kill -9 (and after a clean stop) with a data dir holding
`--gib` GiB over `--partitions` partitions. Writes a JSON record to stdout.

Usage: bench/scripts/recovery_time.py [--gib 2] [--partitions 100] [--kill-during-load]
"""

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
SPATE = os.path.join(ROOT, "target", "release", "spate")


def start(data, port, log_path):
    log = open(log_path, "ab")
    t0 = time.monotonic()
    proc = subprocess.Popen([SPATE, "start", "--data-dir", data, "--listen", f"127.0.0.1:{port}"],
                            stdout=log, stderr=subprocess.STDOUT)
    offset = os.path.getsize(log_path)
    while True:
        with open(log_path, "rb") as f:
            f.seek(offset)
            if b"spate ready" in f.read():
                return proc, time.monotonic() - t0
        if proc.poll() is not None:
            raise SystemExit(f"broker exited: see {log_path}")
        time.sleep(0.005)


def main():
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient, NewTopic
    from conftest import free_port

    ap = argparse.ArgumentParser()
    ap.add_argument("--gib", type=float, default=2)
    ap.add_argument("--partitions", type=int, default=100)
    ap.add_argument("--kill-during-load", action="store_true",
                    help="kill -9 while the producer is still sending (at 90 %% of --gib)")
    args = ap.parse_args()
    data = os.path.join(ROOT, "target", "bench", "recovery")
    log_path = data + ".log"
    shutil.rmtree(data, ignore_errors=True)
    if os.path.exists(log_path):
        os.unlink(log_path)
    port = free_port()
    proc, first_ready_s = start(data, port, log_path)
    try:
        admin = AdminClient({"bootstrap.servers": f"127.0.0.1:{port}"})
        admin.create_topics([NewTopic("rec", num_partitions=args.partitions, replication_factor=1)],
                            request_timeout=120)["rec"].result(120)
        p = Producer({"bootstrap.servers": f"127.0.0.1:{port}", "acks": "1", "linger.ms": 5,
                      "queue.buffering.max.kbytes": 1 << 20})
        value = b"r" * 16384
        total = int(args.gib * (1 << 30))
        n = total // len(value)
        t0 = time.monotonic()
        sent = 0
        for i in range(n):
            if args.kill_during_load and i == n * 9 // 10:
                break
            while True:
                try:
                    p.produce("rec", value=value, partition=i % args.partitions)
                    sent += 1
                    break
                except BufferError:
                    p.poll(0.01)
            if i % 1000 == 0:
                p.poll(0)
        if args.kill_during_load:
            p.poll(0.2)  # the broker is mid-write when it dies
        else:
            assert p.flush(300) == 0
        produce_s = time.monotonic() - t0
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc, kill9_ready_s = start(data, port, log_path)
        proc.send_signal(signal.SIGTERM)
        proc.wait(120)
        proc, clean_ready_s = start(data, port, log_path)
        du = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(data) for f in fs)
        print(json.dumps({
            "gib_sent": round(sent * len(value) / (1 << 30), 3), "partitions": args.partitions,
            "disk_bytes": du, "produce_s": round(produce_s, 2),
            "ready_s": {"empty": round(first_ready_s, 3), "after_kill9": round(kill9_ready_s, 3),
                        "after_clean_stop": round(clean_ready_s, 3)},
            "killed_during_load": args.kill_during_load,
            "command": f"bench/scripts/recovery_time.py --gib {args.gib} --partitions {args.partitions}"
                       + (" --kill-during-load" if args.kill_during_load else ""),
        }, indent=2))
    finally:
        proc.kill()
        proc.wait()
        shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    main()
