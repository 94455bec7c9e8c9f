#!/usr/bin/env python3
"""A consumer a few MiB behind one busy partition among many idle ones: how much of what it
reads comes from disk, for two `spate` binaries side by side.

Each round and side: a fresh broker (`--cores 1`, pinned to CPU 0), a topic of 200 partitions,
10 records to partition 0, a pause (the maintenance tick sees it written), 4,000 records of
1 KB to partition 0 (acks=all), then librdkafka reads partition 0 from offset 0. Reports the
shard's file read bytes during the read (`spate_shard_file_read_bytes_total`) and the
partition's cache bound (`spate_log_cache_bytes_max`, 0 where the binary has no such gauge).

Usage: bench/scripts/tail_cache_share.py BEFORE AFTER [--rounds 2] [--json OUT]
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "clients", "python"))

PARTITIONS, RECORDS, RECORD_BYTES = 200, 4000, 1000


def metric(admin_url, name, **labels):
    """Sum of the samples of `name` whose labels include `labels`."""
    text = urllib.request.urlopen(admin_url + "/metrics", timeout=10).read().decode()
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            if all(f'{k}="{v}"' in line for k, v in labels.items()):
                total += float(line.rsplit(" ", 1)[1])
    return total


def run_side(binary, port, admin_port):
    from confluent_kafka import Consumer, Producer, TopicPartition
    from helpers import create_topic

    os.makedirs(os.path.join(ROOT, "target"), exist_ok=True)
    data = tempfile.mkdtemp(dir=os.path.join(ROOT, "target"), prefix="cache-share-")
    broker = subprocess.Popen(["taskset", "-c", "0", binary, "start", "--data-dir", data, "--listen",
                               f"127.0.0.1:{port}", "--admin-listen", f"127.0.0.1:{admin_port}",
                               "--cores", "1"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    bootstrap, admin = f"127.0.0.1:{port}", f"http://127.0.0.1:{admin_port}"
    try:
        for line in broker.stdout:
            if "ready" in line:
                break
        create_topic(bootstrap, "demo", PARTITIONS)
        producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5,
                             "batch.size": 65536})
        for _ in range(10):
            producer.produce("demo", value=b"x" * RECORD_BYTES, partition=0)
        producer.flush(30)
        time.sleep(2.5)
        for _ in range(RECORDS):
            producer.produce("demo", value=b"x" * RECORD_BYTES, partition=0)
        assert producer.flush(60) == 0
        read_before = metric(admin, "spate_shard_file_read_bytes_total")
        consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "cache-share",
                             "enable.auto.commit": False})
        consumer.assign([TopicPartition("demo", 0, 0)])
        start, seen = time.time(), 0
        while seen < RECORDS + 10:
            msg = consumer.poll(10)
            assert msg is not None and msg.error() is None, msg
            seen += 1
        elapsed = time.time() - start
        consumer.close()
        return {"disk_read_bytes": int(metric(admin, "spate_shard_file_read_bytes_total") - read_before),
                "consume_s": round(elapsed, 3),
                "cache_bytes_max_p0": int(metric(admin, "spate_log_cache_bytes_max", topic="demo", partition="0"))}
    finally:
        broker.terminate()
        broker.wait(30)
        shutil.rmtree(data, ignore_errors=True)


def main():
    from ab_rounds import alternated
    from conftest import free_port

    ap = argparse.ArgumentParser()
    ap.add_argument("before")
    ap.add_argument("after")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--json")
    args = ap.parse_args()
    runs = []
    for round_, name, binary in alternated(args.rounds, args.before, args.after):
        result = run_side(binary, free_port(), free_port())
        runs.append({"round": round_, "side": name, **result})
        print(json.dumps(runs[-1]), flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"date": time.strftime("%Y-%m-%d"), "before": args.before, "after": args.after,
                       "settings": {"partitions": PARTITIONS, "records": RECORDS, "record_bytes": RECORD_BYTES,
                                    "broker_cores": 1},
                       "runs": runs}, f, indent=1)


if __name__ == "__main__":
    main()
