#!/usr/bin/env python3
"""Peak broker memory under two loads the hardening issue names, for one or more broker
binaries side by side (A/B), as JSON on stdout:

- `lagging`: a topic of N partitions, each holding `--partition-kib` of records, read after a
  restart (nothing cached) by `--fetchers` connections at once, each sending one Fetch for
  every partition from offset 0 with max_bytes 2^31-1 and partition_max_bytes 1 MiB (a client
  asking for everything; librdkafka and the Java client cap themselves at 50 MiB, a hostile or
  misconfigured one does not). Reports the answer sizes and the broker's peak RSS growth.
- `flood`: `--connections` connections each writing acks=0 Produce requests of `--batch-kib`
  to one partition as fast as the socket takes them, for `--flood-s` seconds, without reading.
  Reports bytes sent, records stored and the broker's peak RSS growth.

The peak is the growth of VmHWM over the broker's RSS before the load (VmHWM is the process's
high-water mark, so the broker is restarted before each load).

Usage: bench/scripts/memory_bounds.py BIN [BIN...] [--partitions 1000] [--partition-kib 512]
       [--fetchers 4] [--connections 500] [--batch-kib 64] [--flood-s 15] [--cores 2]
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


def status_kib(pid, field):
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":"))


class Spate:
    def __init__(self, binary, data, cores):
        self.binary, self.data, self.cores = binary, data, cores
        self.port = free_port()
        self.proc = None
        shutil.rmtree(data, ignore_errors=True)
        os.makedirs(data)

    def start(self):
        log_path = self.data + ".log"
        log = open(log_path, "ab")
        self.proc = subprocess.Popen(
            [self.binary, "start", "--data-dir", self.data, "--listen", f"127.0.0.1:{self.port}",
             "--admin-listen", "none", "--cores", str(self.cores)],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 120
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    break
            except OSError:
                assert self.proc.poll() is None and time.monotonic() < deadline, "broker did not start"
                time.sleep(0.05)
        time.sleep(0.5)
        return self

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def rss_kib(self):
        return status_kib(self.proc.pid, "VmRSS")

    def hwm_kib(self):
        return status_kib(self.proc.pid, "VmHWM")


def fill(spate, topic, partitions, partition_kib):
    batch = w.record_batch([w.Rec(key=None, value=os.urandom(1000)) for _ in range(60)])
    per_partition = max(1, partition_kib * 1024 // len(batch))
    with w.Conn("127.0.0.1", spate.port, timeout=60) as c:
        err, msg = w.create_topics_v2(c, topic, partitions)
        assert err == 0, (err, msg)
        # Pipelined acks=1 produces, a window at a time.
        for p in range(partitions):
            corrs = [w.produce_v3_send(c, topic, p, batch, acks=1) for _ in range(per_partition)]
            for corr in corrs:
                assert w.produce_v3_recv(c, corr)[0] == 0
    return per_partition * len(batch)


def lagging(binary, args):
    spate = Spate(binary, os.path.join(ROOT, "target", "bench", "memory-lagging"), args.cores).start()
    try:
        topic = "lagging"
        stored = fill(spate, topic, args.partitions, args.partition_kib)
        spate.stop()
        spate.start()
        with w.Conn("127.0.0.1", spate.port, timeout=120) as c:  # the topic is loaded
            w.metadata_v1(c, [topic])
        base = spate.rss_kib()
        sizes = [None] * args.fetchers
        offsets = {p: 0 for p in range(args.partitions)}

        def fetch(i):
            with w.Conn("127.0.0.1", spate.port, timeout=300) as c:
                out = w.fetch_partitions_v4(c, topic, offsets, max_bytes=2**31 - 1,
                                            partition_max_bytes=1 << 20)
                sizes[i] = sum(len(d) for _, _, d in out.values())

        threads = [threading.Thread(target=fetch, args=(i,)) for i in range(args.fetchers)]
        start = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return {
            "partitions": args.partitions,
            "stored_bytes_per_partition": stored,
            "fetchers": args.fetchers,
            "answer_bytes": sizes,
            "seconds": round(time.monotonic() - start, 2),
            "rss_before_mib": round(base / 1024, 1),
            "peak_growth_mib": round((spate.hwm_kib() - base) / 1024, 1),
        }
    finally:
        spate.stop()


def flood(binary, args):
    spate = Spate(binary, os.path.join(ROOT, "target", "bench", "memory-flood"), args.cores).start()
    try:
        topic = "flood"
        with w.Conn("127.0.0.1", spate.port) as c:
            assert w.create_topics_v2(c, topic, 1)[0] == 0
        spate.stop()
        spate.start()  # a fresh high-water mark
        value = os.urandom(1000)
        batch = w.record_batch([w.Rec(key=None, value=value) for _ in range(args.batch_kib)])
        body = (w.string(None) + w.i16(0) + w.i32(30000)
                + w.array([w.string(topic) + w.array([w.i32(0) + w.bytes_(batch)])]))
        payload = w.request_header(0, 3, 1) + body
        frame = w.i32(len(payload)) + payload
        burst = frame * 16
        base = spate.rss_kib()
        socks = []
        for _ in range(args.connections):
            s = socket.create_connection(("127.0.0.1", spate.port))
            s.setblocking(False)
            socks.append([s, 0])  # bytes of `burst` sent so far
        sent = 0
        deadline = time.monotonic() + args.flood_s
        peak = 0
        last_sample = 0
        while time.monotonic() < deadline:
            progressed = False
            for entry in socks:
                s, at = entry
                try:
                    n = s.send(burst[at:])
                except BlockingIOError:
                    continue
                progressed = True
                sent += n
                entry[1] = (at + n) % len(burst)
            now = time.monotonic()
            if now - last_sample > 0.2:
                peak = max(peak, spate.rss_kib())
                last_sample = now
            if not progressed:
                time.sleep(0.002)
        for s, _ in socks:
            s.close()
        time.sleep(2)
        with w.Conn("127.0.0.1", spate.port, timeout=60) as c:
            end = w.list_offsets_v1(c, topic, [0])
        return {
            "connections": args.connections,
            "batch_bytes": len(batch),
            "seconds": args.flood_s,
            "sent_mib": round(sent / 2**20, 1),
            "end_offsets": end,
            "rss_before_mib": round(base / 1024, 1),
            "peak_growth_mib": round((spate.hwm_kib() - base) / 1024, 1),
            "sampled_peak_growth_mib": round((peak - base) / 1024, 1),
        }
    finally:
        spate.stop()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("binaries", nargs="+")
    ap.add_argument("--partitions", type=int, default=1000)
    ap.add_argument("--partition-kib", type=int, default=512)
    ap.add_argument("--fetchers", type=int, default=4)
    ap.add_argument("--connections", type=int, default=500)
    ap.add_argument("--batch-kib", type=int, default=64)
    ap.add_argument("--flood-s", type=float, default=15)
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--only", choices=["lagging", "flood"])
    args = ap.parse_args()
    results = {}
    for binary in args.binaries:
        r = {}
        if args.only in (None, "lagging"):
            r["lagging"] = lagging(binary, args)
        if args.only in (None, "flood"):
            r["flood"] = flood(binary, args)
        results[binary] = r
        print(json.dumps({binary: r}), file=sys.stderr)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
