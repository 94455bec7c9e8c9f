#!/usr/bin/env python3
"""Memory and file descriptors per idle partition: starts `target/release/spate` (or $SPATE_BIN; one shard by
default), creates one topic with N partitions, writes one small record to each, and reports the
growth of the broker's RSS and open fds per partition, how long the creation took, and the CPU
the broker spends while all of them sit idle (maintenance ticks), as JSON on stdout.

Usage: bench/scripts/idle_partitions.py [--partitions 2000] [--cores 1] [--idle-s 10]
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))


def fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def cpu_s(pid):
    """User plus system CPU seconds the process used so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main():
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient, NewTopic
    from conftest import free_port

    ap = argparse.ArgumentParser()
    ap.add_argument("--partitions", type=int, default=2000)
    ap.add_argument("--cores", type=int, default=1)
    ap.add_argument("--idle-s", type=float, default=10)
    args = ap.parse_args()
    data = os.path.join(ROOT, "target", "bench", "idle-partitions")
    shutil.rmtree(data, ignore_errors=True)
    port = free_port()
    os.makedirs(data)
    log_path = data + ".log"
    log = open(log_path, "wb")
    proc = subprocess.Popen([os.environ.get("SPATE_BIN", os.path.join(ROOT, "target", "release", "spate")), "start", "--data-dir", data,
                             "--listen", f"127.0.0.1:{port}", "--admin-listen", "none",
                             "--cores", str(args.cores)], stdout=log, stderr=subprocess.STDOUT)
    try:
        while b"ready" not in open(log_path, "rb").read():
            time.sleep(0.05)
        time.sleep(0.5)
        base = (rss_kib(proc.pid), fds(proc.pid))
        admin = AdminClient({"bootstrap.servers": f"127.0.0.1:{port}"})
        create_start = time.time()
        admin.create_topics([NewTopic("idle", num_partitions=args.partitions, replication_factor=1)],
                            request_timeout=300)["idle"].result(300)
        create_s = time.time() - create_start
        time.sleep(1)
        created = (rss_kib(proc.pid), fds(proc.pid))
        p = Producer({"bootstrap.servers": f"127.0.0.1:{port}", "acks": "all", "linger.ms": 20})
        for i in range(args.partitions):
            p.produce("idle", value=b"x" * 100, partition=i)
        assert p.flush(120) == 0
        time.sleep(1)
        written = (rss_kib(proc.pid), fds(proc.pid))
        idle_from = cpu_s(proc.pid)
        time.sleep(args.idle_s)
        idle_cpu = (cpu_s(proc.pid) - idle_from) / args.idle_s
        n = args.partitions
        print(json.dumps({
            "partitions": n,
            "cores": args.cores,
            "create_topic_s": round(create_s, 2),
            "idle_cpu_fraction": round(idle_cpu, 4),
            "rss_kib": {"empty_broker": base[0], "created": created[0], "one_record_each": written[0]},
            "fds": {"empty_broker": base[1], "created": created[1], "one_record_each": written[1]},
            "rss_bytes_per_partition_created": (created[0] - base[0]) * 1024 / n,
            "rss_bytes_per_partition_with_one_record": (written[0] - base[0]) * 1024 / n,
            "fds_per_partition": (written[1] - base[1]) / n,
        }, indent=2))
    finally:
        proc.kill()
        proc.wait()
        log.close()
        shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    main()
