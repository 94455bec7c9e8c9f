#!/usr/bin/env python3
"""Side-by-side produce benchmark: Spate vs Apache Kafka vs the raw disk, in one run.

The foundation's baseline, until `spate bench compare` (the benchmark issue) replaces it.
Same client for both brokers (librdkafka through confluent-kafka), same machine, same data
filesystem, runs alternated A/B. Records: fixed-size values, no key, no compression, 8
partitions. Reports throughput, delivery latency percentiles (produce() call to delivery
report: at an unlimited rate this is mostly client-side queueing), broker CPU seconds per GB,
broker peak RSS, and exec-to-ready time, plus O_DIRECT sequential write bandwidth of the disk.

Usage: bench/scripts/produce_compare.py [--mb 256] [--rounds 2] [--record-bytes 1024]
Needs: target/release/spate, Kafka jars in target/kafka-ref/lib (tests/reference/pom.xml),
confluent-kafka (ci/install-deps).
"""

import argparse
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
WORK = os.path.join(ROOT, "target", "bench")
KAFKA_LIB = os.path.join(ROOT, "target", "kafka-ref", "lib")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def raw_disk_write_mb_s(directory, mb):
    """O_DIRECT sequential 1 MiB writes, then one fdatasync, as dd measures it."""
    path = os.path.join(directory, "raw-disk.bin")
    start = time.monotonic()
    subprocess.run(
        ["dd", "if=/dev/zero", f"of={path}", "bs=1M", f"count={mb}", "oflag=direct",
         "conv=fdatasync", "status=none"],
        check=True,
    )
    elapsed = time.monotonic() - start
    os.remove(path)
    return mb / elapsed


class Broker:
    def __init__(self, kind, data_dir, port, fsync_each_batch):
        self.kind = kind
        self.data_dir = data_dir
        self.port = port
        self.fsync_each_batch = fsync_each_batch
        self.proc = None
        self.ready_s = None

    def start(self):
        shutil.rmtree(self.data_dir, ignore_errors=True)
        os.makedirs(self.data_dir)
        listen = f"127.0.0.1:{self.port}"
        if self.kind == "spate":
            cmd = [os.path.join(ROOT, "target", "release", "spate"), "start",
                   "--data-dir", self.data_dir, "--listen", listen]
        else:
            cmd = [os.path.join(ROOT, "tests", "reference", "kafka-as-spate"), "start",
                   "--data-dir", self.data_dir, "--listen", listen, "--cores", "2"]
            if self.fsync_each_batch:
                cmd += ["--set", "log.flush.interval.messages=1"]
        start = time.monotonic()
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                     text=True, start_new_session=True)
        for line in self.proc.stdout:
            if "ready" in line:
                self.ready_s = time.monotonic() - start
                break
        else:
            raise RuntimeError(f"{self.kind} exited before ready")

    def server_pid(self):
        if self.kind == "spate":
            return self.proc.pid
        out = subprocess.run(["pgrep", "-f", f"kafka.Kafka {self.data_dir}/server.properties"],
                             capture_output=True, text=True).stdout.split()
        return int(out[0])

    def cpu_seconds(self):
        with open(f"/proc/{self.server_pid()}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def peak_rss_mb(self):
        with open(f"/proc/{self.server_pid()}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
        return None

    def stop(self):
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        shutil.rmtree(self.data_dir, ignore_errors=True)


def create_topic(bootstrap, topic, partitions):
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics([NewTopic(topic, partitions, 1)])
    futures[topic].result(30)


def produce(bootstrap, topic, total_bytes, record_bytes, acks):
    from confluent_kafka import Producer

    producer = Producer({
        "bootstrap.servers": bootstrap, "acks": acks, "linger.ms": 5,
        "batch.size": 1 << 20, "queue.buffering.max.kbytes": 1 << 18,
        "enable.idempotence": False, "compression.type": "none",
    })
    value = os.urandom(record_bytes)
    count = total_bytes // record_bytes
    latencies_us = []
    errors = []

    start = time.monotonic()
    for i in range(count):
        sent = time.monotonic()
        while True:
            try:
                producer.produce(topic, value, on_delivery=lambda e, m, s=sent: (
                    errors.append(e) if e else latencies_us.append((time.monotonic() - s) * 1e6)))
                break
            except BufferError:
                producer.poll(0.001)
        if i % 1000 == 0:
            producer.poll(0)
    producer.flush(120)
    elapsed = time.monotonic() - start
    if errors:
        raise RuntimeError(f"{len(errors)} delivery errors, first: {errors[0]}")
    latencies_us.sort()

    def pct(p):
        return latencies_us[min(len(latencies_us) - 1, int(len(latencies_us) * p))] / 1000

    return {
        "records": count, "seconds": elapsed, "mb_per_s": count * record_bytes / elapsed / 1e6,
        "latency_ms": {"p50": pct(0.50), "p99": pct(0.99), "p99.9": pct(0.999),
                       "max": latencies_us[-1] / 1000},
    }


def run_one(kind, fsync_each_batch, acks, args):
    port = free_port()
    broker = Broker(kind, os.path.join(WORK, f"{kind}-{port}"), port, fsync_each_batch)
    broker.start()
    try:
        bootstrap = f"127.0.0.1:{port}"
        create_topic(bootstrap, "bench", 8)
        cpu_before = broker.cpu_seconds()
        result = produce(bootstrap, "bench", args.mb << 20, args.record_bytes, acks)
        cpu = broker.cpu_seconds() - cpu_before
        result.update({
            "broker": kind, "acks": acks, "fsync_each_batch": fsync_each_batch,
            "broker_cpu_s_per_gb": cpu / (result["records"] * args.record_bytes / 1e9),
            "broker_peak_rss_mb": broker.peak_rss_mb(), "ready_s": broker.ready_s,
        })
        return result
    finally:
        broker.stop()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mb", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--record-bytes", type=int, default=1024)
    parser.add_argument("--out", default=os.path.join(ROOT, "perf-reports"))
    args = parser.parse_args()
    os.makedirs(WORK, exist_ok=True)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                            capture_output=True, text=True).stdout.strip()
    # Spate fsyncs every acks=all batch (group commit); Kafka is measured both with its
    # default (page cache, no fsync) and with log.flush.interval.messages=1.
    workloads = [("spate", True, "all"), ("kafka", False, "all"), ("kafka", True, "all"),
                 ("spate", True, "1"), ("kafka", False, "1")]
    runs = []
    for round_index in range(args.rounds):
        order = workloads if round_index % 2 == 0 else list(reversed(workloads))
        for kind, fsync, acks in order:
            result = run_one(kind, fsync, acks, args)
            result["round"] = round_index
            runs.append(result)
            print(json.dumps(result), flush=True)
    raw = raw_disk_write_mb_s(WORK, 1024)
    record = {
        "benchmark": "produce_compare", "commit": commit, "date": time.strftime("%Y-%m-%d"),
        "machine": {"cpus": os.cpu_count(), "kernel": platform.release()},
        "settings": {"mb_per_run": args.mb, "record_bytes": args.record_bytes,
                     "partitions": 8, "client": "confluent-kafka (librdkafka)",
                     "linger_ms": 5, "compression": "none", "idempotence": False},
        "raw_disk_odirect_write_mb_s": raw, "runs": runs,
    }
    name = f"{record['date']}-produce-compare-{commit}"
    with open(os.path.join(args.out, name + ".json"), "w") as f:
        json.dump(record, f, indent=1)
    with open(os.path.join(args.out, name + ".md"), "w") as f:
        f.write(markdown(record))
    print(markdown(record))
    print(f"wrote perf-reports/{name}.json and .md")


def median(values):
    values = sorted(values)
    return values[len(values) // 2] if len(values) % 2 else sum(values[len(values) // 2 - 1:][:2]) / 2


def summarize(runs):
    groups = {}
    for run in runs:
        groups.setdefault((run["broker"], run["acks"], run["fsync_each_batch"]), []).append(run)
    return {
        key: {
            "mb_per_s": median([r["mb_per_s"] for r in rs]),
            "p50_ms": median([r["latency_ms"]["p50"] for r in rs]),
            "p99_ms": median([r["latency_ms"]["p99"] for r in rs]),
            "cpu_s_per_gb": median([r["broker_cpu_s_per_gb"] for r in rs]),
            "peak_rss_mb": max(r["broker_peak_rss_mb"] for r in rs),
            "ready_s": median([r["ready_s"] for r in rs]),
        }
        for key, rs in groups.items()
    }


def markdown(record):
    s = record["settings"]
    lines = [
        f"# Produce: Spate vs Apache Kafka ({record['date']}, commit {record['commit']})",
        "",
        f"Client {s['client']}, {s['record_bytes']} B records, {s['partitions']} partitions, "
        f"{s['mb_per_run']} MiB per run, linger.ms={s['linger_ms']}, compression "
        f"{s['compression']}, idempotence off; {record['machine']['cpus']} CPUs shared by "
        "broker and client; runs alternated A/B; medians over rounds.",
        f"Raw disk, O_DIRECT sequential 1 MiB writes in the same run: "
        f"{record['raw_disk_odirect_write_mb_s']:.0f} MB/s.",
        "",
        "| broker | acks | fsync per batch | MB/s | p50 ms | p99 ms | broker CPU s/GB | "
        "broker peak RSS MB | ready s |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    summary = summarize(record["runs"])
    for (broker, acks, fsync), m in sorted(summary.items()):
        lines.append(
            f"| {broker} | {acks} | {'yes' if fsync else 'no'} | {m['mb_per_s']:.0f} | "
            f"{m['p50_ms']:.1f} | {m['p99_ms']:.1f} | {m['cpu_s_per_gb']:.2f} | "
            f"{m['peak_rss_mb']:.0f} | {m['ready_s']:.3f} |"
        )
    lines += ["", "Ratios (Spate / Kafka):", ""]
    for acks, kafka_fsync in [("all", True), ("all", False), ("1", False)]:
        spate = summary.get(("spate", acks, True))
        kafka = summary.get(("kafka", acks, kafka_fsync))
        if not spate or not kafka:
            continue
        label = f"acks={acks} vs Kafka {'with' if kafka_fsync else 'without'} fsync"
        lines.append(
            f"- {label}: throughput {spate['mb_per_s'] / kafka['mb_per_s']:.2f}, "
            f"p99 {spate['p99_ms'] / kafka['p99_ms']:.2f}, "
            f"CPU per GB {spate['cpu_s_per_gb'] / kafka['cpu_s_per_gb']:.2f}, "
            f"peak RSS {spate['peak_rss_mb'] / kafka['peak_rss_mb']:.2f}"
        )
    lines += [
        "",
        f"Spate throughput as a fraction of the raw disk (acks=all, fsync): "
        f"{summary[('spate', 'all', True)]['mb_per_s'] / record['raw_disk_odirect_write_mb_s']:.2f}"
        if ("spate", "all", True) in summary else "",
        "",
        "Reproduce: `bench/scripts/produce_compare.py --mb "
        f"{s['mb_per_run']} --record-bytes {s['record_bytes']}`",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
