#!/usr/bin/env python3
"""Soak: a mixed workload against one real `spate` broker for a given time, sampling the
broker's resources over time and judging whether anything grows without bound.

Workload (all on loopback, one broker started here with its own data dir and admin port):
- producers (confluent-kafka) at a bounded total rate (--rate-mb): acks=0/none, acks=1/gzip,
  acks=all/snappy idempotent, acks=all/lz4 (not idempotent), acks=1/zstd, and an idempotent
  acks=all/zstd producer writing keys from a bounded key space (with some tombstones) to a
  compacted topic; the idempotent producers are replaced by new instances (new producer ids)
  every --producer-restart-s;
- a tail consumer group whose members (1..3) join and leave every --rebalance-s, committing;
- a catch-up consumer that reads the delete-policy topic from its log start to the high
  watermark of the moment, over and over, checking that offsets are contiguous and that the
  acks=all producers' sequence numbers have no gaps (idempotent ones: no duplicates either);
- topics created, written and deleted in a loop (at most --churn-alive at once);
- retention (log.retention.ms, short) deleting segments, compaction cleaning the keyed topic.

Every --sample-s it records broker RSS (/proc VmRSS and spate_process_resident_memory_bytes),
open fds, threads, data dir disk use, client delivery latency p99 by acks, the broker's Produce
p99 (from spate_request_latency_seconds bucket deltas), tail end-to-end p99, records produced
and consumed, errors. Output: OUT.jsonl (one sample a line), OUT.json (settings, samples,
summary), OUT.svg (plot). Exit 0 on PASS, 1 on FAIL (growth beyond the stated tolerances,
errors a client should not see, lost acks=all records, consumers not making progress).

    python3 bench/scripts/soak.py --spate target/release/spate --duration-s 3600 \
        --out perf-reports/2026-12-07-soak-SHA
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections import defaultdict
from pathlib import Path

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

ROOT = Path(__file__).resolve().parents[2]

MAIN_TOPIC = "soak-main"
COMPACT_TOPIC = "soak-compact"
TAIL_GROUP = "soak-tail"
MAIN_PARTITIONS = 4
COMPACT_PARTITIONS = 2

# (name, acks, codec, idempotent, share of the rate)
PRODUCERS = [
    ("p-acks0-none", "0", "none", False, 0.15),
    ("p-acks1-gzip", "1", "gzip", False, 0.15),
    ("p-acksall-snappy-idem", "all", "snappy", True, 0.2),
    ("p-acksall-lz4", "all", "lz4", False, 0.15),
    ("p-acks1-zstd", "1", "zstd", False, 0.15),
]
COMPACT_SHARE = 0.2

# Growth tolerances over the second half of the run: a resource FAILs when both its linear-fit
# slope exceeds `slope_per_h` and its last-third mean exceeds its middle-third mean by more than
# `rise` (relative) + `rise_abs` (absolute). Both, so noise around a flat line passes and so
# does a slow, bounded warm-up that has levelled off.
TOLERANCES = {
    "rss_bytes": {"slope_per_h": 32 << 20, "rise": 0.05, "rise_abs": 4 << 20, "unit": "bytes"},
    "fds": {"slope_per_h": 30, "rise": 0.0, "rise_abs": 10, "unit": "fds"},
    "threads": {"slope_per_h": 4, "rise": 0.0, "rise_abs": 2, "unit": "threads"},
    # spate_partitions: 4 + 2 + __consumer_offsets + at most --churn-alive + 1 churn topics.
    "partitions": {"slope_per_h": 10, "rise": 0.0, "rise_abs": 4, "unit": "partitions"},
    "disk_bytes": {"slope_per_h": 128 << 20, "rise": 0.15, "rise_abs": 16 << 20, "unit": "bytes"},
    # The compacted topic's log (spate_log_size_bytes): its live data is bounded by the key space
    # (--compact-keys x --record-bytes before compression), whatever was written to it.
    "compact_log_bytes": {"slope_per_h": 8 << 20, "rise": 0.15, "rise_abs": 1 << 20, "unit": "bytes"},
}


def log(msg):
    print(f"[soak {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _child_setup():
    # The broker dies with this script even if the script is SIGKILLed (PR_SET_PDEATHSIG).
    try:
        import ctypes
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)
    except OSError:
        pass
    try:
        resource.setrlimit(resource.RLIMIT_MEMLOCK, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
    except (ValueError, OSError):
        try:
            _, hard = resource.getrlimit(resource.RLIMIT_MEMLOCK)
            resource.setrlimit(resource.RLIMIT_MEMLOCK, (hard, hard))
        except (ValueError, OSError):
            pass
    os.setpgrp()


def percentile(values, q):
    if not values:
        return None
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


# ---------------------------------------------------------------------------------------------
# Shared state


class Stats:
    """Counters and latency samples of the clients, drained by the sampler each interval."""

    def __init__(self):
        self.lock = threading.Lock()
        self.produced = defaultdict(int)  # producer name -> delivered records (total)
        self.delivery_errors = defaultdict(int)  # producer name -> failed deliveries (total)
        self.error_samples = []  # first few error strings
        self.lat = defaultdict(list)  # acks -> delivery latencies (s) this interval
        self.e2e = []  # tail consumer end-to-end latencies (s) this interval
        self.consumed = defaultdict(int)  # consumer kind -> records (total)
        self.consumer_errors = defaultdict(int)
        self.events = defaultdict(int)  # rebalances, joins, leaves, churn, catch-up passes...
        self.check_failures = []  # data checks that failed (loss, gaps, duplicates)
        self.tolerated = defaultdict(int)  # errors expected from the workload (deleted topics)

    def error(self, kind, text):
        with self.lock:
            if len(self.error_samples) < 50:
                self.error_samples.append(f"{time.strftime('%H:%M:%S')} {kind}: {text}")

    def event(self, name, n=1):
        with self.lock:
            self.events[name] += n

    def drain(self):
        with self.lock:
            lat, self.lat = self.lat, defaultdict(list)
            e2e, self.e2e = self.e2e, []
            snap = {
                "produced": dict(self.produced),
                "delivery_errors": dict(self.delivery_errors),
                "consumed": dict(self.consumed),
                "consumer_errors": dict(self.consumer_errors),
                "events": dict(self.events),
                "tolerated": dict(self.tolerated),
                "check_failures": len(self.check_failures),
            }
        return snap, lat, e2e


# ---------------------------------------------------------------------------------------------
# Broker


class Broker:
    def __init__(self, binary, data_dir, cores, settings):
        self.binary = binary
        self.data_dir = data_dir
        self.port = free_port()
        self.admin_port = free_port()
        self.cores = cores
        self.settings = settings
        self.proc = None
        self.log_path = Path(str(data_dir) + ".log")

    @property
    def bootstrap(self):
        return f"127.0.0.1:{self.port}"

    def start(self):
        argv = [str(self.binary), "start", "--data-dir", str(self.data_dir),
                "--listen", self.bootstrap, "--admin-listen", f"127.0.0.1:{self.admin_port}",
                "--cores", str(self.cores)]
        for k, v in self.settings.items():
            argv += ["--set", f"{k}={v}"]
        self.data_dir.mkdir(parents=True, exist_ok=True)
        logf = open(self.log_path, "ab")
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT,
                                     preexec_fn=_child_setup)
        logf.close()
        deadline = time.monotonic() + 60
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"broker exited with {self.proc.returncode}; see {self.log_path}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    pass
                urllib.request.urlopen(f"http://127.0.0.1:{self.admin_port}/metrics", timeout=2).read()
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"broker not ready after 60 s; see {self.log_path}")
                time.sleep(0.1)

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self):
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(30)
        except subprocess.TimeoutExpired:
            log("broker did not stop 30 s after SIGTERM: SIGKILL")
            self.proc.kill()
            return self.proc.wait(10)

    def metrics(self):
        with urllib.request.urlopen(f"http://127.0.0.1:{self.admin_port}/metrics", timeout=5) as r:
            return r.read().decode()


def parse_metrics(text):
    """{(name, frozenset(labels)): value} of a Prometheus text page."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        try:
            head, value = line.rsplit(" ", 1)
            value = float(value)
        except ValueError:
            continue
        if "{" in head:
            name, rest = head.split("{", 1)
            labels = []
            for part in rest.rstrip("}").split('",'):
                if "=" in part:
                    k, v = part.split("=", 1)
                    labels.append((k.strip(), v.strip().strip('"')))
            out[(name, frozenset(labels))] = value
        else:
            out[(head, frozenset())] = value
    return out


def metric_sum(m, name, **want):
    total = 0.0
    for (n, labels), v in m.items():
        if n == name and all((k, val) in labels for k, val in want.items()):
            total += v
    return total


def histogram_buckets(m, name, api):
    """[(le, cumulative count)] of one API's latency histogram."""
    b = []
    for (n, labels), v in m.items():
        if n == f"{name}_bucket" and ("api", api) in labels:
            le = dict(labels)["le"]
            b.append((float("inf") if le == "+Inf" else float(le), v))
    return sorted(b)


def histogram_p99_delta(prev, cur, q=0.99):
    """The q-quantile (upper bucket bound) of the observations between two scrapes."""
    if not prev or not cur:
        return None
    prev_d = dict(prev)
    deltas = [(le, c - prev_d.get(le, 0)) for le, c in cur]
    total = deltas[-1][1] if deltas else 0
    if total <= 0:
        return None
    want = q * total
    for le, c in deltas:
        if c >= want:
            return le
    return None


def proc_status(pid):
    rss = threads = None
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1]) * 1024
            elif line.startswith("Threads:"):
                threads = int(line.split()[1])
    return rss, threads


def disk_usage(path):
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_blocks * 512
            except OSError:
                pass  # deleted under us by retention or compaction
    return total


# ---------------------------------------------------------------------------------------------
# Workload


def payload(prefix: bytes, size: int, rnd: random.Random) -> bytes:
    # Half random (so compression has something to chew on but not everything), half repeats.
    body = size - len(prefix)
    half = body // 2
    return prefix + rnd.randbytes(half) + (b"spate-soak-" * ((body - half) // 11 + 1))[: body - half]


class Workload:
    def __init__(self, args, broker: Broker, stats: Stats, stop: threading.Event):
        self.args = args
        self.broker = broker
        self.stats = stats
        self.stop = stop
        self.threads = []
        self.rate_bytes = args.rate_mb * 1_000_000
        self.record_bytes = args.record_bytes

    def spawn(self, name, fn, *a):
        t = threading.Thread(target=self._guard, args=(name, fn) + a, name=name, daemon=True)
        t.start()
        self.threads.append(t)

    def _guard(self, name, fn, *a):
        try:
            fn(*a)
        except Exception as e:  # a client thread that dies is a failure of the run
            self.stats.error("thread", f"{name} died: {e!r}")
            with self.stats.lock:
                self.stats.check_failures.append(f"{name} died: {e!r}")
            log(f"thread {name} died: {e!r}")

    def base_conf(self, client_id):
        return {"bootstrap.servers": self.broker.bootstrap, "client.id": client_id}

    def setup_topics(self):
        admin = AdminClient(self.base_conf("soak-admin"))
        fs = admin.create_topics([
            NewTopic(MAIN_TOPIC, num_partitions=MAIN_PARTITIONS, replication_factor=1),
            NewTopic(COMPACT_TOPIC, num_partitions=COMPACT_PARTITIONS, replication_factor=1, config={
                "cleanup.policy": "compact",
                "segment.bytes": str(self.args.compact_segment_bytes),
                "delete.retention.ms": "10000",
            }),
        ])
        for f in fs.values():
            f.result(30)

    def start(self):
        self.setup_topics()
        for (name, acks, codec, idem, share) in PRODUCERS:
            self.spawn(name, self.produce_loop, name, acks, codec, idem, share * self.rate_bytes)
        self.spawn("p-compact", self.compact_loop, COMPACT_SHARE * self.rate_bytes)
        self.spawn("tail-group", self.tail_group_loop)
        self.spawn("catch-up", self.catch_up_loop)
        self.spawn("churn", self.churn_loop)

    # -- producers -----------------------------------------------------------------------------

    def new_producer(self, name, acks, codec, idem):
        conf = self.base_conf(name)
        conf.update({
            "acks": acks, "compression.type": codec, "linger.ms": 5, "batch.size": 65536,
            "enable.idempotence": idem, "message.timeout.ms": 30000,
        })
        if acks == "all" and not idem:
            conf["max.in.flight.requests.per.connection"] = 1  # order kept, retries may duplicate
        return Producer(conf)

    def produce_loop(self, name, acks, codec, idem, rate_bytes):
        rnd = random.Random(name)
        gen = 0
        stats = self.stats
        while not self.stop.is_set():
            gen += 1
            instance = f"{name}.{gen}"
            p = self.new_producer(instance, acks, codec, idem)
            seq = [0] * MAIN_PARTITIONS

            def delivered(err, msg, name=name, acks=acks):
                if err is not None:
                    with stats.lock:
                        stats.delivery_errors[name] += 1
                    stats.error(name, str(err))
                    return
                lat = msg.latency()
                with stats.lock:
                    stats.produced[name] += 1
                    if lat is not None:
                        stats.lat[acks].append(lat)

            restart_at = time.monotonic() + (self.args.producer_restart_s if idem else 1e12)
            self._paced(rate_bytes, restart_at, lambda part: (
                p.produce(MAIN_TOPIC, value=payload(f"{instance}|{part}|{seq[part]}|".encode(),
                                                    self.record_bytes, rnd),
                          partition=part, on_delivery=delivered),
                seq.__setitem__(part, seq[part] + 1)), p)
            left = p.flush(30)
            if left:
                stats.error(name, f"{left} records undelivered at flush")
                with stats.lock:
                    stats.delivery_errors[name] += left
            stats.event("producer_instances")

    def _paced(self, rate_bytes, until, send_one, p):
        """Calls send_one(partition) at rate_bytes / record_bytes records a second until `until`
        or stop, polling the producer for delivery reports."""
        per_s = max(1.0, rate_bytes / self.record_bytes)
        start = time.monotonic()
        sent = 0
        part = 0
        while not self.stop.is_set() and time.monotonic() < until:
            due = int((time.monotonic() - start) * per_s) - sent
            for _ in range(min(due, 2000)):
                try:
                    send_one(part)
                except BufferError:
                    p.poll(0.05)
                    break
                sent += 1
                part = (part + 1) % MAIN_PARTITIONS
            p.poll(0.01)

    def compact_loop(self, rate_bytes):
        rnd = random.Random("compact")
        stats = self.stats
        keys = self.args.compact_keys
        gen = 0
        while not self.stop.is_set():
            gen += 1
            p = self.new_producer(f"p-compact.{gen}", "all", "zstd", True)

            def delivered(err, msg):
                if err is not None:
                    with stats.lock:
                        stats.delivery_errors["p-compact"] += 1
                    stats.error("p-compact", str(err))
                    return
                lat = msg.latency()
                with stats.lock:
                    stats.produced["p-compact"] += 1
                    if lat is not None:
                        stats.lat["all"].append(lat)

            def send(_part):
                k = rnd.randrange(keys)
                value = None if rnd.random() < 0.05 else payload(b"c%d|" % k, self.record_bytes, rnd)
                p.produce(COMPACT_TOPIC, key=b"key-%d" % k, value=value, on_delivery=delivered)

            self._paced(rate_bytes, time.monotonic() + self.args.producer_restart_s, send, p)
            left = p.flush(30)
            if left:
                with stats.lock:
                    stats.delivery_errors["p-compact"] += left
                stats.error("p-compact", f"{left} records undelivered at flush")
            stats.event("producer_instances")

    # -- tail group ----------------------------------------------------------------------------

    def tail_member(self, member, leave: threading.Event):
        stats = self.stats
        c = Consumer({
            "bootstrap.servers": self.broker.bootstrap, "group.id": TAIL_GROUP, "client.id": member,
            "auto.offset.reset": "latest", "enable.auto.commit": True, "auto.commit.interval.ms": 1000,
            "session.timeout.ms": 6000, "heartbeat.interval.ms": 1000,
            "partition.assignment.strategy": "range",
            "fetch.wait.max.ms": 100,
        })

        def on_assign(_c, parts):
            stats.event("tail_assignments")

        c.subscribe([MAIN_TOPIC, COMPACT_TOPIC], on_assign=on_assign)
        stats.event("tail_joins")
        try:
            while not self.stop.is_set() and not leave.is_set():
                msgs = c.consume(500, 0.2)
                now = time.time()
                n = 0
                for m in msgs:
                    if m.error():
                        if m.error().code() == KafkaError._PARTITION_EOF:
                            continue
                        with stats.lock:
                            stats.consumer_errors["tail"] += 1
                        stats.error(member, str(m.error()))
                        continue
                    n += 1
                    ts_type, ts = m.timestamp()
                    if ts > 0:
                        e2e = now - ts / 1000.0
                        if n % 10 == 0:
                            with stats.lock:
                                stats.e2e.append(e2e)
                if n:
                    with stats.lock:
                        stats.consumed["tail"] += n
        finally:
            c.close()  # LeaveGroup
            stats.event("tail_leaves")

    def tail_group_loop(self):
        members = []  # (name, thread, leave event)
        n = 0
        rnd = random.Random("tail")

        def join():
            nonlocal n
            n += 1
            ev = threading.Event()
            name = f"tail-{n}"
            t = threading.Thread(target=self._guard, args=(name, self.tail_member, name, ev), daemon=True)
            t.start()
            members.append((name, t, ev))

        join()
        try:
            while not self.stop.wait(self.args.rebalance_s):
                if len(members) <= 1 or (len(members) < 3 and rnd.random() < 0.5):
                    join()
                else:
                    name, t, ev = members.pop(rnd.randrange(len(members)))
                    ev.set()
                    t.join(30)
                self.stats.event("tail_membership_changes")
        finally:
            for _name, _t, ev in members:
                ev.set()
            for _name, t, _ev in members:
                t.join(30)

    # -- catch-up ------------------------------------------------------------------------------

    def catch_up_loop(self):
        stats = self.stats
        # acks=all producers: sequence numbers per (instance, partition) must have no gaps;
        # idempotent ones must have no duplicates either.
        checked = {name: idem for (name, acks, _c, idem, _s) in PRODUCERS if acks == "all"}
        passno = 0
        while not self.stop.is_set():
            passno += 1
            c = Consumer({
                "bootstrap.servers": self.broker.bootstrap, "group.id": f"soak-catch-up",
                "client.id": f"catch-up-{passno}", "enable.auto.commit": False,
                "enable.partition.eof": False, "fetch.wait.max.ms": 100,
                # Retention may delete what this pass has not read yet: go on from the new start.
                "auto.offset.reset": "earliest",
            })
            try:
                highs = {}
                lows = {}
                for part in range(MAIN_PARTITIONS):
                    lo, hi = c.get_watermark_offsets(TopicPartition(MAIN_TOPIC, part), timeout=10)
                    lows[part], highs[part] = lo, hi
                c.assign([TopicPartition(MAIN_TOPIC, part, -2) for part in range(MAIN_PARTITIONS)])
                last_offset = {}
                last_seq = {}
                done = {p for p in range(MAIN_PARTITIONS) if highs[p] <= lows[p]}
                deadline = time.monotonic() + max(120.0, self.args.catch_up_pause_s * 4)
                n = 0
                while len(done) < MAIN_PARTITIONS and not self.stop.is_set():
                    if time.monotonic() > deadline:
                        stats.error("catch-up", f"pass {passno} did not reach {highs} by its deadline")
                        with stats.lock:
                            stats.consumer_errors["catch_up_stalled"] += 1
                        break
                    for m in c.consume(1000, 0.5):
                        if m.error():
                            with stats.lock:
                                stats.consumer_errors["catch_up"] += 1
                            stats.error("catch-up", str(m.error()))
                            continue
                        part, off = m.partition(), m.offset()
                        if part in done:
                            continue
                        n += 1
                        prev = last_offset.get(part)
                        if prev is not None and off != prev + 1:
                            # Legitimate only if retention deleted the offsets skipped: the log
                            # start is now at or past where the read went on.
                            lo_now, _ = c.get_watermark_offsets(TopicPartition(MAIN_TOPIC, part), timeout=10)
                            if off > prev and lo_now >= off:
                                stats.event("catch_up_retention_skips")
                                for key in [k for k in last_seq if k[1] == part]:
                                    del last_seq[key]
                            else:
                                self.check_failure(f"catch-up pass {passno}: {MAIN_TOPIC}/{part} offset {off} "
                                                   f"after {prev} (log start now {lo_now})")
                        last_offset[part] = off
                        head = m.value().split(b"|", 3)
                        if len(head) == 4:
                            instance, vpart, s = head[0].decode(), int(head[1]), int(head[2])
                            producer = instance.rsplit(".", 1)[0]
                            if producer in checked:
                                key = (instance, vpart)
                                ls = last_seq.get(key)
                                if ls is not None:
                                    if s > ls + 1:
                                        self.check_failure(
                                            f"catch-up pass {passno}: {instance} partition {vpart}: "
                                            f"seq {s} after {ls} (acks=all records missing) at offset {off}")
                                    elif s <= ls and checked[producer]:
                                        self.check_failure(
                                            f"catch-up pass {passno}: {instance} partition {vpart}: "
                                            f"duplicate seq {s} after {ls} (idempotent) at offset {off}")
                                last_seq[key] = max(s, ls if ls is not None else s)
                        if off + 1 >= highs[part]:
                            done.add(part)
                with stats.lock:
                    stats.consumed["catch_up"] += n
                if len(done) == MAIN_PARTITIONS:
                    stats.event("catch_up_passes")
            finally:
                c.close()
            self.stop.wait(self.args.catch_up_pause_s)

    def check_failure(self, text):
        with self.stats.lock:
            if len(self.stats.check_failures) < 200:
                self.stats.check_failures.append(text)
        log(f"CHECK FAILED: {text}")

    # -- topic churn ---------------------------------------------------------------------------

    def churn_loop(self):
        stats = self.stats
        admin = AdminClient(self.base_conf("soak-churn-admin"))
        alive = []
        n = 0

        def delivered(err, _msg):
            if err is not None:
                # A record for a topic deleted meanwhile is expected to fail.
                with stats.lock:
                    stats.tolerated["churn_delivery"] += 1

        while not self.stop.wait(self.args.churn_s):
            n += 1
            name = f"soak-churn-{n}"
            try:
                admin.create_topics([NewTopic(name, num_partitions=2, replication_factor=1)])[name].result(30)
                stats.event("topics_created")
                alive.append(name)
            except Exception as e:
                stats.error("churn", f"create {name}: {e}")
                with stats.lock:
                    stats.consumer_errors["churn_admin"] += 1
                continue
            # A producer per topic, closed at once: a long-lived one keeps every topic it
            # ever wrote to in its metadata and asks for them again at each refresh
            # (topic.metadata.refresh.interval.ms), which with auto.create.topics.enable
            # recreates deleted topics (Kafka does the same).
            p = Producer({**self.base_conf(f"soak-churn-producer-{n}"), "acks": "1", "linger.ms": 5,
                          "message.timeout.ms": 10000})
            for i in range(200):
                try:
                    p.produce(name, key=b"%d" % i, value=b"x" * 200, on_delivery=delivered)
                except BufferError:
                    p.poll(0.1)
            if p.flush(10):
                with stats.lock:
                    stats.consumer_errors["churn_produce"] += 1
            del p
            while len(alive) > self.args.churn_alive:
                victim = alive.pop(0)
                try:
                    admin.delete_topics([victim])[victim].result(30)
                    stats.event("topics_deleted")
                except Exception as e:
                    stats.error("churn", f"delete {victim}: {e}")
                    with stats.lock:
                        stats.consumer_errors["churn_admin"] += 1

    def join(self, timeout):
        deadline = time.monotonic() + timeout
        for t in self.threads:
            t.join(max(0.1, deadline - time.monotonic()))
        return [t.name for t in self.threads if t.is_alive()]


# ---------------------------------------------------------------------------------------------
# Analysis and output


def linear_slope(xs, ys):
    n = len(xs)
    if n < 2:
        return 0.0
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    if sxx == 0:
        return 0.0
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx


def judge_growth(samples, duration_s):
    out = {}
    ok = True
    for key, tol in TOLERANCES.items():
        pts = [(s["t_s"], s[key]) for s in samples if s.get(key) is not None]
        if len(pts) < 6:
            out[key] = {"verdict": "too few samples"}
            continue
        half = [(t, v) for t, v in pts if t >= duration_s / 2]
        mid = [v for t, v in pts if duration_s / 3 <= t < 2 * duration_s / 3]
        last = [v for t, v in pts if t >= 2 * duration_s / 3]
        slope_per_h = linear_slope([t for t, _ in half], [v for _, v in half]) * 3600
        mid_mean = sum(mid) / len(mid) if mid else 0
        last_mean = sum(last) / len(last) if last else 0
        rise_limit = mid_mean * tol["rise"] + tol["rise_abs"]
        grows = slope_per_h > tol["slope_per_h"] and (last_mean - mid_mean) > rise_limit
        ok &= not grows
        out[key] = {
            "start": pts[0][1], "middle": pts[len(pts) // 2][1], "end": pts[-1][1],
            "min": min(v for _, v in pts), "max": max(v for _, v in pts),
            "mid_third_mean": mid_mean, "last_third_mean": last_mean,
            "slope_per_hour_second_half": slope_per_h,
            "tolerance": {"slope_per_hour": tol["slope_per_h"], "rise_limit": rise_limit},
            "verdict": "FAIL (grows)" if grows else "PASS",
        }
    return ok, out


def svg_plot(samples, path, title):
    panels = [
        ("RSS (MiB)", lambda s: s["rss_bytes"] / 2**20 if s.get("rss_bytes") is not None else None),
        ("open fds", lambda s: s.get("fds")),
        ("threads", lambda s: s.get("threads")),
        ("data dir disk use (MiB): |all (du)|the compacted topic's log",
         [lambda s: s["disk_bytes"] / 2**20 if s.get("disk_bytes") is not None else None,
          lambda s: s["compact_log_bytes"] / 2**20 if s.get("compact_log_bytes") is not None else None]),
        ("p99 latency (ms): |client acks=all|broker Produce (bucket bound)|tail end-to-end",
         [lambda s: s.get("client_p99_ms", {}).get("all"), lambda s: s.get("broker_produce_p99_ms"),
          lambda s: s.get("tail_e2e_p99_ms")]),
        ("records/s: |produced|consumed by the tail group",
         [lambda s: s.get("produced_per_s"), lambda s: s.get("tail_consumed_per_s")]),
    ]
    colors = ["#1f77b4", "#d62728", "#2ca02c"]
    W, PH, ML, MR, MT = 900, 150, 70, 20, 40
    H = MT + len(panels) * (PH + 40) + 20
    tmax = max((s["t_s"] for s in samples), default=1) or 1
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="11">',
           f'<rect width="{W}" height="{H}" fill="white"/>',
           f'<text x="{W / 2}" y="20" text-anchor="middle" font-size="14">{title}</text>']
    for i, (label, fns) in enumerate(panels):
        fns = fns if isinstance(fns, list) else [fns]
        y0 = MT + i * (PH + 40) + 15
        series = [[(s["t_s"], f(s)) for s in samples if f(s) is not None] for f in fns]
        vals = [v for ser in series for _, v in ser]
        vmax = max(vals, default=1) or 1
        vmin = min(0, min(vals, default=0))
        head, *names = label.split("|")
        spans = "".join(f'<tspan fill="{colors[j % 3]}">{"" if j == 0 else ", "}{n}</tspan>'
                        for j, n in enumerate(names))
        out.append(f'<text x="{ML}" y="{y0 - 4}">{head}{spans}</text>')
        out.append(f'<rect x="{ML}" y="{y0}" width="{W - ML - MR}" height="{PH}" fill="none" stroke="#999"/>')
        for frac in (0, 0.5, 1):
            v = vmin + (vmax - vmin) * frac
            y = y0 + PH - PH * frac
            out.append(f'<text x="{ML - 4}" y="{y + 4:.1f}" text-anchor="end">{v:.4g}</text>')
            if frac == 0.5:
                out.append(f'<line x1="{ML}" y1="{y:.1f}" x2="{W - MR}" y2="{y:.1f}" stroke="#eee"/>')
        for j, ser in enumerate(series):
            if not ser:
                continue
            pts = " ".join(
                f"{ML + (W - ML - MR) * t / tmax:.1f},{y0 + PH - PH * (v - vmin) / ((vmax - vmin) or 1):.1f}"
                for t, v in ser)
            out.append(f'<polyline points="{pts}" fill="none" stroke="{colors[j % 3]}" stroke-width="1.2"/>')
        out.append(f'<text x="{W - MR}" y="{y0 + PH + 14}" text-anchor="end">{tmax / 60:.0f} min</text>')
        out.append(f'<text x="{ML}" y="{y0 + PH + 14}">0</text>')
    out.append("</svg>")
    Path(path).write_text("\n".join(out) + "\n")


# ---------------------------------------------------------------------------------------------


def fmt(key, v):
    if v is None:
        return "–"
    if key.endswith("bytes"):
        return f"{v / 2**20:.1f} MiB"
    return f"{v:.4g}"


def markdown(result):
    """The results of a finished run as markdown tables (for perf-reports)."""
    summ = result["summary"]
    lines = [f"**{summ['verdict']}** after {summ['duration_s']:.0f} s"
             + ("" if summ["growth_judged"] else " (growth not judged: short run)"), ""]
    lines += ["| resource | start | middle | end | min | max | mean, middle third | mean, last third "
              "| slope over the second half, per hour | tolerance (slope / rise) | verdict |",
              "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for key, g in summ["growth"].items():
        if "start" not in g:
            continue
        tol = g["tolerance"]
        lines.append(
            f"| {key} | {fmt(key, g['start'])} | {fmt(key, g['middle'])} | {fmt(key, g['end'])} "
            f"| {fmt(key, g['min'])} | {fmt(key, g['max'])} | {fmt(key, g['mid_third_mean'])} "
            f"| {fmt(key, g['last_third_mean'])} | {fmt(key, g['slope_per_hour_second_half'])} "
            f"| {fmt(key, tol['slope_per_hour'])} / {fmt(key, tol['rise_limit'])} | {g['verdict']} |")
    t = summ["totals"]
    p99 = summ["p99_ms_over_run"]
    lines += ["", "| totals | |", "| --- | --- |"]
    lines.append(f"| records delivered, by producer | {', '.join(f'{k} {v}' for k, v in sorted(t['produced'].items()))} |")
    lines.append(f"| delivery errors | {sum(t['delivery_errors'].values())} {t['delivery_errors'] or ''} |")
    lines.append(f"| records consumed | {', '.join(f'{k} {v}' for k, v in sorted(t['consumed'].items()))} |")
    lines.append(f"| consumer / admin errors | {sum(t['consumer_errors'].values())} {t['consumer_errors'] or ''} |")
    lines.append(f"| data check failures (offset gaps, acks=all sequence gaps, duplicates) | {t['check_failures']} |")
    lines.append(f"| events | {', '.join(f'{k} {v}' for k, v in sorted(t['events'].items()))} |")
    lines.append(f"| tolerated (expected) errors | {t['tolerated'] or 0} |")
    lines.append(f"| p99 ms: client acks=all, median of the {result['args']['sample_s']:.0f} s intervals / worst interval "
                 f"| {fmt('', p99['client_acks_all_median_of_intervals'])} / {fmt('', p99['client_acks_all_worst_interval'])} |")
    lines.append(f"| p99 ms: broker Produce (histogram bucket bound), median of intervals | {fmt('', p99['broker_produce_median_of_intervals'])} |")
    lines.append(f"| p99 ms: tail consumer end-to-end, median of intervals | {fmt('', p99['tail_e2e_median_of_intervals'])} |")
    if summ["failures"]:
        lines += ["", "Failures:", ""] + [f"- {f}" for f in summ["failures"]]
    return "\n".join(lines) + "\n"


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--markdown":
        print(markdown(json.loads(Path(sys.argv[2]).read_text())), end="")
        return 0
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--spate", default=str(ROOT / "target" / "release" / "spate"))
    ap.add_argument("--duration-s", type=float, default=600)
    ap.add_argument("--sample-s", type=float, default=10)
    ap.add_argument("--out", default=None, help="output prefix (OUT.json, OUT.jsonl, OUT.svg)")
    ap.add_argument("--work-dir", default=str(ROOT / "target" / "soak"),
                    help="data dir parent (a real filesystem: O_DIRECT)")
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--rate-mb", type=float, default=2.0, help="total produce rate, MB/s")
    ap.add_argument("--record-bytes", type=int, default=512)
    ap.add_argument("--retention-ms", type=int, default=60000)
    ap.add_argument("--segment-bytes", type=int, default=4 << 20)
    ap.add_argument("--compact-segment-bytes", type=int, default=1 << 20)
    ap.add_argument("--compact-keys", type=int, default=2000)
    ap.add_argument("--rebalance-s", type=float, default=None, help="default: min(30, duration/6)")
    ap.add_argument("--producer-restart-s", type=float, default=None, help="default: min(120, duration/3)")
    ap.add_argument("--catch-up-pause-s", type=float, default=15)
    ap.add_argument("--churn-s", type=float, default=2)
    ap.add_argument("--churn-alive", type=int, default=5)
    ap.add_argument("--judge-growth", choices=["auto", "on", "off"], default="auto",
                    help="auto: on for runs of 600 s or more (shorter ones are all warm-up)")
    ap.add_argument("--set", action="append", default=[], metavar="K=V", help="extra broker setting")
    ap.add_argument("--keep", action="store_true", help="keep the data dir")
    ap.add_argument("--markdown", metavar="OUT.json", help="print a finished run's results as markdown and exit")
    args = ap.parse_args()
    if args.rebalance_s is None:
        args.rebalance_s = min(30.0, args.duration_s / 6)
    if args.producer_restart_s is None:
        args.producer_restart_s = min(120.0, args.duration_s / 3)
    judge = args.judge_growth == "on" or (args.judge_growth == "auto" and args.duration_s >= 600)

    binary = Path(args.spate).resolve()
    if not binary.exists():
        sys.exit(f"no broker binary at {binary}")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out = Path(args.out) if args.out else Path(args.work_dir) / f"soak-{stamp}"
    out.parent.mkdir(parents=True, exist_ok=True)
    data_dir = Path(args.work_dir) / f"data-{stamp}-{os.getpid()}"

    settings = {
        "log.retention.ms": args.retention_ms,
        "log.retention.check.interval.ms": 5000,
        "log.segment.bytes": args.segment_bytes,
        "log.roll.ms": max(10000, args.retention_ms // 2),
        # Small cache bounds, reached in the first minute, so growth past them is a leak.
        "log.cache.bytes.per.shard": 32 << 20,
        "log.cache.bytes.per.partition": 4 << 20,
        "log.read.ahead.bytes.per.shard": 24 << 20,
        "log.cleaner.dedupe.buffer.size": 4 << 20,
        # Idempotent producers are replaced every few minutes: their state must expire.
        "producer.id.expiration.ms": 300000,
        "producer.id.expiration.check.interval.ms": 30000,
        "group.initial.rebalance.delay.ms": 0,
        # Topics exist only when the workload creates them (no client recreates a deleted one).
        "auto.create.topics.enable": "false",
        "offsets.topic.num.partitions": 4,
    }
    for kv in args.set:
        k, v = kv.split("=", 1)
        settings[k] = v

    broker = Broker(binary, data_dir, args.cores, settings)
    stats = Stats()
    stop = threading.Event()
    workload = Workload(args, broker, stats, stop)
    samples = []
    interrupted = []

    def on_signal(signum, _frame):
        interrupted.append(signum)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    jsonl = open(str(out) + ".jsonl", "w")
    summary = {}
    broker_rc = None
    try:
        log(f"broker {binary} on {broker.bootstrap}, admin {broker.admin_port}, data {data_dir}")
        broker.start()
        workload.start()
        t0 = time.monotonic()
        prev_hist = histogram_buckets(parse_metrics(broker.metrics()), "spate_request_latency_seconds", "Produce")
        prev_prod = prev_tail = 0
        next_sample = t0 + args.sample_s
        while not stop.is_set():
            if stop.wait(max(0.0, next_sample - time.monotonic())):
                break
            next_sample += args.sample_s
            t = time.monotonic() - t0
            if not broker.alive():
                with stats.lock:
                    stats.check_failures.append(f"broker exited with {broker.proc.returncode} at {t:.0f} s")
                log("broker died")
                break
            pid = broker.proc.pid
            s = {"t_s": round(t, 1), "wall": time.strftime("%H:%M:%S")}
            try:
                s["rss_bytes"], s["threads"] = proc_status(pid)
                s["fds"] = len(os.listdir(f"/proc/{pid}/fd"))
            except OSError:
                pass
            s["disk_bytes"] = disk_usage(data_dir)
            try:
                m = parse_metrics(broker.metrics())
                s["rss_metric_bytes"] = metric_sum(m, "spate_process_resident_memory_bytes")
                s["connections"] = metric_sum(m, "spate_connections")
                s["partitions"] = metric_sum(m, "spate_partitions")
                s["log_cache_bytes"] = metric_sum(m, "spate_log_cache_bytes")
                s["log_size_bytes"] = {tp: metric_sum(m, "spate_log_size_bytes", topic=tp)
                                       for tp in (MAIN_TOPIC, COMPACT_TOPIC)}
                s["compact_log_bytes"] = s["log_size_bytes"][COMPACT_TOPIC]
                s["log_start_offset"] = {tp: metric_sum(m, "spate_log_start_offset", topic=tp)
                                         for tp in (MAIN_TOPIC, COMPACT_TOPIC)}
                s["bytes_in"] = {tp: metric_sum(m, "spate_topic_bytes_in_total", topic=tp)
                                 for tp in (MAIN_TOPIC, COMPACT_TOPIC)}
                s["request_memory_held_bytes"] = metric_sum(m, "spate_request_memory_held_bytes")
                hist = histogram_buckets(m, "spate_request_latency_seconds", "Produce")
                p99 = histogram_p99_delta(prev_hist, hist)
                s["broker_produce_p99_ms"] = None if p99 is None or p99 == float("inf") else p99 * 1000
                prev_hist = hist
            except OSError as e:
                stats.error("metrics", str(e))
            snap, lat, e2e = stats.drain()
            s["client_p99_ms"] = {acks: round(percentile(v, 0.99) * 1000, 3) for acks, v in lat.items() if v}
            s["tail_e2e_p99_ms"] = round(percentile(e2e, 0.99) * 1000, 3) if e2e else None
            produced = sum(snap["produced"].values())
            tail = snap["consumed"].get("tail", 0)
            s["produced_per_s"] = round((produced - prev_prod) / args.sample_s, 1)
            s["tail_consumed_per_s"] = round((tail - prev_tail) / args.sample_s, 1)
            prev_prod, prev_tail = produced, tail
            s.update(snap)
            samples.append(s)
            jsonl.write(json.dumps(s) + "\n")
            jsonl.flush()
            log(f"t={t:5.0f}s rss={s.get('rss_bytes', 0) / 2**20:.1f}MiB fds={s.get('fds')} thr={s.get('threads')} "
                f"disk={s['disk_bytes'] / 2**20:.1f}MiB prod/s={s['produced_per_s']} tail/s={s['tail_consumed_per_s']} "
                f"p99(all)={s['client_p99_ms'].get('all')}ms broker={s.get('broker_produce_p99_ms')}ms "
                f"errs={sum(snap['delivery_errors'].values()) + sum(snap['consumer_errors'].values())} "
                f"checks={snap['check_failures']}")
            if t >= args.duration_s:
                break
    finally:
        stop.set()
        still = workload.join(60)
        if still:
            log(f"client threads still running after 60 s: {still}")
        broker_rc = broker.stop()
        jsonl.close()

    # ---- summary --------------------------------------------------------------------------
    snap, _, _ = stats.drain()
    duration = samples[-1]["t_s"] if samples else 0
    failures = list(stats.check_failures)
    if interrupted:
        failures.append(f"interrupted by signal {interrupted[0]}")
    if broker_rc not in (0, None):
        failures.append(f"broker exit code {broker_rc} at stop")
    for name, (_n, acks, _c, _i, _s) in {p[0]: p for p in PRODUCERS}.items():
        if snap["produced"].get(name, 0) == 0:
            failures.append(f"{name} delivered nothing")
    if snap["produced"].get("p-compact", 0) == 0:
        failures.append("p-compact delivered nothing")
    for name, n in snap["delivery_errors"].items():
        if n:
            failures.append(f"{name}: {n} delivery errors")
    for name, n in snap["consumer_errors"].items():
        if n:
            failures.append(f"consumer {name}: {n} errors")
    if snap["consumed"].get("tail", 0) == 0:
        failures.append("tail group consumed nothing")
    if snap["events"].get("catch_up_passes", 0) == 0:
        failures.append("no catch-up pass completed")
    if snap["events"].get("topics_deleted", 0) == 0 and duration > 4 * args.churn_s * (args.churn_alive + 1):
        failures.append("no topic deleted")
    # Progress: tail consumption and production in every sample of the second half.
    stalled = [s["t_s"] for s in samples if s["t_s"] >= duration / 2 and
               (s["produced_per_s"] <= 0 or s["tail_consumed_per_s"] <= 0)]
    if stalled:
        failures.append(f"no produce or tail progress in the samples at t={stalled[:10]} s")
    # Retention: the delete-policy topic's log start must have moved once segments aged out.
    last = samples[-1] if samples else {}
    if duration > 3 * args.retention_ms / 1000 and not last.get("log_start_offset", {}).get(MAIN_TOPIC):
        failures.append(f"retention deleted nothing from {MAIN_TOPIC} in {duration:.0f} s")
    # Compaction: the keyed topic's log must stay well under what was written to it.
    if last.get("bytes_in", {}).get(COMPACT_TOPIC):
        ratio = last["log_size_bytes"][COMPACT_TOPIC] / last["bytes_in"][COMPACT_TOPIC]
        if judge and ratio > 0.5:
            failures.append(f"{COMPACT_TOPIC} keeps {ratio:.0%} of the bytes written to it: compaction not keeping up")
    growth_ok, growth = judge_growth(samples, duration) if samples else (True, {})
    if judge and not growth_ok:
        failures += [f"{k} grows: {v['slope_per_hour_second_half']:.4g}/h over the second half, "
                     f"last third {v['last_third_mean']:.4g} vs middle {v['mid_third_mean']:.4g}"
                     for k, v in growth.items() if v.get("verdict", "").startswith("FAIL")]
    verdict = "PASS" if not failures else "FAIL"
    summary = {
        "verdict": verdict,
        "failures": failures,
        "duration_s": duration,
        "growth_judged": judge,
        "growth": growth,
        "totals": snap,
        "error_samples": stats.error_samples,
        "p99_ms_over_run": {
            "client_acks_all_median_of_intervals": percentile(
                [s["client_p99_ms"]["all"] for s in samples if "all" in s["client_p99_ms"]], 0.5),
            "client_acks_all_worst_interval": max(
                (s["client_p99_ms"]["all"] for s in samples if "all" in s["client_p99_ms"]), default=None),
            "broker_produce_median_of_intervals": percentile(
                [s["broker_produce_p99_ms"] for s in samples if s.get("broker_produce_p99_ms") is not None], 0.5),
            "tail_e2e_median_of_intervals": percentile(
                [s["tail_e2e_p99_ms"] for s in samples if s.get("tail_e2e_p99_ms") is not None], 0.5),
        },
    }
    result = {
        "tool": "bench/scripts/soak.py",
        "binary": str(binary),
        "args": {k: v for k, v in vars(args).items()},
        "broker_settings": settings,
        "producers": [{"name": n, "acks": a, "codec": c, "idempotent": i, "share": s}
                      for (n, a, c, i, s) in PRODUCERS] + [
            {"name": "p-compact", "acks": "all", "codec": "zstd", "idempotent": True, "share": COMPACT_SHARE}],
        "tolerances": TOLERANCES,
        "summary": summary,
        "samples": samples,
    }
    Path(str(out) + ".json").write_text(json.dumps(result, indent=1) + "\n")
    if samples:
        svg_plot(samples, str(out) + ".svg", f"spate soak: {duration / 60:.0f} min, {args.rate_mb} MB/s mixed")
    if not args.keep and verdict == "PASS":
        shutil.rmtree(data_dir, ignore_errors=True)
    # Human summary
    print(f"soak {verdict} after {duration:.0f} s ({out}.json, {out}.svg)")
    for k, v in growth.items():
        if "start" in v:
            print(f"  {k:17s} start {v['start']:.4g}  middle {v['middle']:.4g}  end {v['end']:.4g}  "
                  f"slope {v['slope_per_hour_second_half']:+.4g}/h (limit {v['tolerance']['slope_per_hour']:.4g})  "
                  f"{v['verdict'] if judge else 'not judged (short run)'}")
    print(f"  totals: produced {sum(snap['produced'].values())}, consumed {snap['consumed']}, "
          f"events {snap['events']}")
    for f in failures:
        print(f"  FAIL: {f}")
    return 0 if verdict == "PASS" else 1


if __name__ == "__main__":
    sys.exit(main())
