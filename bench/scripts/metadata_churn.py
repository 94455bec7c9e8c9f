#!/usr/bin/env python3
"""What metadata churn costs the data path, for one or more broker binaries side by side:
a librdkafka producer (acks=all, linger 0) writes `--rate` records/s of 1 KB to one busy
partition the whole time and measures each record's delivery latency; after `--quiet-s`
seconds alone, `--topics` topics are created one CreateTopics request at a time, then deleted
one DeleteTopics request at a time. Reports the produce latency percentiles while quiet,
while creating and while deleting, and how long creating and deleting took, as JSON.

Usage: bench/scripts/metadata_churn.py BIN [BIN...] [--topics 1000] [--rate 2000] [--cores 2]
"""

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))

import kafka_wire as w  # noqa: E402
from conftest import free_port  # noqa: E402


def percentiles(samples):
    if not samples:
        return None
    s = sorted(samples)

    def at(q):
        return round(s[min(len(s) - 1, int(q * len(s)))] * 1000, 2)

    return {"count": len(s), "p50_ms": at(0.5), "p99_ms": at(0.99), "p999_ms": at(0.999),
            "max_ms": round(s[-1] * 1000, 2)}


def delete_topics_v1(conn, topic):
    r = conn.request(20, 1, w.array([w.string(topic)]) + w.i32(30000))
    r.i32()  # throttle
    for _ in range(r.i32()):
        r.string()
        return r.i16()
    raise AssertionError("empty DeleteTopics answer")


def run(binary, args):
    from confluent_kafka import Producer

    data = os.path.join(ROOT, "target", "bench", "metadata-churn")
    shutil.rmtree(data, ignore_errors=True)
    os.makedirs(data)
    port = free_port()
    log = open(data + ".log", "wb")
    proc = subprocess.Popen(
        [binary, "start", "--data-dir", data, "--listen", f"127.0.0.1:{port}", "--admin-listen",
         "none", "--cores", str(args.cores)], stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline
                time.sleep(0.05)
        with w.Conn("127.0.0.1", port) as c:
            assert w.create_topics_v2(c, "busy", 1)[0] == 0
        phase = ["quiet"]
        latencies = {"quiet": [], "creating": [], "deleting": [], "after": []}
        errors = []
        stop = threading.Event()

        def produce():
            p = Producer({"bootstrap.servers": f"127.0.0.1:{port}", "acks": "all",
                          "linger.ms": 0, "enable.idempotence": True})
            value = b"v" * 1000
            interval = 1.0 / args.rate
            next_at = time.monotonic()
            while not stop.is_set():
                sent_at = time.monotonic()
                bucket = latencies[phase[0]]

                def done(err, _msg, sent_at=sent_at, bucket=bucket):
                    if err:
                        errors.append(str(err))
                    else:
                        bucket.append(time.monotonic() - sent_at)

                p.produce("busy", value, on_delivery=done)
                p.poll(0)
                next_at += interval
                delay = next_at - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            p.flush(30)

        producer = threading.Thread(target=produce)
        producer.start()
        time.sleep(args.quiet_s)
        names = [f"churn-{i}" for i in range(args.topics)]
        with w.Conn("127.0.0.1", port, timeout=60) as c:
            phase[0] = "creating"
            t0 = time.monotonic()
            for name in names:
                err, msg = w.create_topics_v2(c, name, 1)
                assert err == 0, (name, err, msg)
            create_s = time.monotonic() - t0
            phase[0] = "deleting"
            t0 = time.monotonic()
            for name in names:
                assert delete_topics_v1(c, name) == 0, name
            delete_s = time.monotonic() - t0
        phase[0] = "after"
        time.sleep(args.quiet_s)
        stop.set()
        producer.join()
        return {
            "topics": args.topics,
            "create_s": round(create_s, 2),
            "delete_s": round(delete_s, 2),
            "produce_latency": {k: percentiles(v) for k, v in latencies.items()},
            "produce_errors": len(errors),
        }
    finally:
        proc.terminate()
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("binaries", nargs="+")
    ap.add_argument("--topics", type=int, default=1000)
    ap.add_argument("--rate", type=int, default=2000)
    ap.add_argument("--quiet-s", type=float, default=5)
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=1)
    args = ap.parse_args()
    results = {b: [] for b in args.binaries}
    for _ in range(args.rounds):
        for binary in args.binaries:
            r = run(binary, args)
            print(json.dumps({binary: r}), file=sys.stderr)
            results[binary].append(r)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
