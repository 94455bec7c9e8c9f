"""Shared helpers: driving the per-language client programs, creating topics, verifying records."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import uuid
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path

import kafka_wire as w
import spate_records as R

ROOT = Path(__file__).resolve().parents[2]
CLIENTS = ROOT / "tests" / "clients"

# A JVM that runs for seconds, not hours: no C2 compiler threads competing for the 2 cores, the
# serial collector, the JDK's class-data-sharing archive (the reference wrapper starts Kafka so).
# The clients' and tools' code paths are the same; only the JIT and the GC differ.
SHORT_JVM = ["-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-Xshare:auto"]

# name -> argv prefix; every program takes `produce ...` / `consume ...` with the same flags.
CLIENT_CMDS = {
    "confluent": [sys.executable, str(CLIENTS / "python" / "confluent_client.py")],
    "kafka-python": [sys.executable, str(CLIENTS / "python" / "kafka_python_client.py")],
    "java": [
        "java",
        *SHORT_JVM,
        "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn",
        "-cp",
        f"{CLIENTS / 'java' / 'classes'}:{CLIENTS / 'java' / 'lib'}/*",
        "spate.Client",
    ],
    "franz-go": [str(CLIENTS / "go" / "bin" / "spate-go-client")],
    "kafkajs": ["node", str(CLIENTS / "node" / "client.js")],
}


# Apache Kafka 4.3.1's jars (broker + kafka-tools), fetched by ci/install-deps through
# bench/peers/kafka fetch: Kafka's own command-line tools run from here.
KAFKA_LIB = Path(os.environ.get("KAFKA_PEER_LIB", ROOT / "target" / "kafka-peer" / "lib"))


def kafka_tool(main_class, *args, input=None, timeout=120, check=True):
    """Runs one of Kafka's command-line tools (`kafka-topics` is org.apache.kafka.tools.TopicCommand,
    `kafka-configs` kafka.admin.ConfigCommand, ...); returns the CompletedProcess (text)."""
    import pytest

    if not (KAFKA_LIB / "kafka-tools-4.3.1.jar").exists():
        pytest.fail(f"Kafka tools not installed ({KAFKA_LIB} missing): run ci/install-deps")
    cmd = ["java", "-Xmx512m", *SHORT_JVM, "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn",
           "-cp", f"{KAFKA_LIB}/*", main_class, *[str(a) for a in args]]
    p = subprocess.run(cmd, input=input, stdin=None if input is not None else subprocess.DEVNULL,
                       capture_output=True, text=True, timeout=timeout)
    if check:
        assert p.returncode == 0, (
            f"{main_class} {' '.join(map(str, args))} exited {p.returncode}\n{p.stdout}\n{p.stderr[-3000:]}")
    return p


def run_client(client, args, timeout=240):
    cmd = CLIENT_CMDS[client] + [str(a) for a in args]
    try:
        p = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        raise AssertionError(
            f"{client} timed out after {timeout}s: {' '.join(cmd)}\nstderr tail:\n"
            f"{(e.stderr or b'').decode(errors='replace')[-3000:]}"
        ) from None
    return p


def produce(client, bootstrap, topic, count, acks="all", codec="none", name=None, timeout=240):
    p = run_client(
        client,
        ["produce", "--bootstrap", bootstrap, "--topic", topic, "--count", count, "--acks", acks,
         "--codec", codec, "--client", name or client],
        timeout=timeout,
    )
    assert p.returncode == 0, (
        f"{client} produce exited {p.returncode}\nstderr tail:\n{p.stderr.decode(errors='replace')[-4000:]}"
    )


def consume(client, bootstrap, topic, partitions, expect, timeout_s=120):
    p = run_client(
        client,
        ["consume", "--bootstrap", bootstrap, "--topic", topic, "--partitions", partitions,
         "--expect", expect, "--timeout-s", timeout_s],
        timeout=timeout_s + 60,
    )
    recs = []
    for line in p.stdout.decode("utf-8").splitlines():
        line = line.strip()
        if line.startswith("{"):
            recs.append(json.loads(line))
    assert p.returncode == 0, (
        f"{client} consume exited {p.returncode} after {len(recs)}/{expect} records\n"
        f"stderr tail:\n{p.stderr.decode(errors='replace')[-4000:]}"
    )
    return recs



def poll_values(consumer, want: int, timeout_s: float, into: list | None = None) -> list:
    """Polls a confluent-kafka `consumer` until `into` (a new list when None) holds `want`
    values, decoded, or `timeout_s` passed; returns the list."""
    got = [] if into is None else into
    end = time.monotonic() + timeout_s
    while len(got) < want and time.monotonic() < end:
        m = consumer.poll(0.5)
        if m is not None and not m.error():
            got.append(m.value().decode())
    return got

def create_topic(bootstrap, topic, partitions, timeout=30, replication_factor=1, config=None):
    """CreateTopics through confluent-kafka's AdminClient, then wait until every partition has a leader.
    `bootstrap` is one HOST:PORT (the broker asked for the leaders)."""
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    new = NewTopic(topic, num_partitions=partitions, replication_factor=replication_factor,
                   config={k: str(v) for k, v in (config or {}).items()})
    fut = admin.create_topics([new], operation_timeout=timeout, request_timeout=timeout)
    fut[topic].result(timeout)
    wait_topic(bootstrap, topic, partitions, timeout)


def wait_topic(bootstrap, topic, partitions, timeout=30):
    host, port = bootstrap.rsplit(":", 1)
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        with w.Conn(host, int(port)) as c:
            _, topics = w.metadata_v1(c, [topic])
        last = topics.get(topic)
        if last and last[0] == 0 and len(last[1]) == partitions and all(
            e == 0 and leader >= 0 for e, leader in last[1].values()
        ):
            if leader_serves(host, int(port), topic, last[1]):
                return
        time.sleep(0.1)
    raise AssertionError(f"topic {topic} not ready with {partitions} partitions: {last}")


def leader_serves(host, port, topic, partitions: dict) -> bool:
    """Whether the bootstrap broker answers ListOffsets for the partitions it leads ({partition:
    (error, leader)} from Metadata): Kafka names itself leader a moment before it serves."""
    with w.Conn(host, port) as c:
        brokers, _ = w.metadata_v1(c, [])
        me = next((node for node, h, p, _ in brokers if (h, p) == (host, port)), None)
        mine = [p for p, (_, leader) in partitions.items() if leader == me]
        if not mine:
            return True
        answers = w.list_offsets_v1(c, topic, mine)
    return all(err == 0 for err, _ in answers.values())


def end_offsets(bootstrap, topic, partitions):
    """Each partition's end offset, asked of its leader (any broker of a cluster bootstraps)."""
    host, port = bootstrap.rsplit(":", 1)
    with w.Conn(host, int(port)) as c:
        brokers, topics = w.metadata_v1(c, [topic])
    addresses = {node: (h, p) for node, h, p, _ in brokers}
    by_leader = defaultdict(list)
    for p, (err, leader) in topics[topic][1].items():
        assert err == 0 and leader in addresses, f"{topic}/{p}: error {err}, leader {leader}"
        if p < partitions:
            by_leader[leader].append(p)
    out = {}
    for leader, parts in by_leader.items():
        with w.Conn(*addresses[leader]) as c:
            res = w.list_offsets_v1(c, topic, parts, -1)
        for p, (err, off) in res.items():
            assert err == 0, f"ListOffsets {topic}/{p} at broker {leader}: error {err}"
            out[p] = off
    return out


def verify(records, client, n, bootstrap, topic, partitions):
    """Everything the cross-client tests promise about a produced-then-consumed record set."""
    name = client
    problems = []
    assert len(records) == n, f"consumed {len(records)} records, expected exactly {n}"
    seen_pos = set()
    by_i = {}
    for r in records:
        pos = (r["partition"], r["offset"])
        assert pos not in seen_pos, f"record at partition/offset {pos} delivered twice"
        seen_pos.add(pos)
        hdrs = dict((k, v) for k, v in r["headers"])
        assert "i" in hdrs, f"record without header i: {r}"
        i = int(hdrs["i"])
        assert i not in by_i, f"i={i} consumed twice: {by_i[i]} and {r}"
        by_i[i] = r
        exp = R.expected(name, i)
        for field in ("key", "value", "headers", "timestamp"):
            if r[field] != exp[field]:
                problems.append(f"i={i} {field}: got {r[field]!r}, expected {exp[field]!r}")
        if len(problems) > 20:
            break
    assert not problems, "record content mismatches:\n" + "\n".join(problems)
    missing = sorted(set(range(n)) - set(by_i))
    assert not missing, f"{len(missing)} records missing, first: {missing[:10]}"

    per_part = defaultdict(list)
    for r in records:
        per_part[r["partition"]].append(r)
    assert set(per_part) <= set(range(partitions)), f"unexpected partitions {sorted(per_part)}"
    for p, recs in per_part.items():
        recs.sort(key=lambda r: r["offset"])
        offs = [r["offset"] for r in recs]
        assert offs == list(range(len(recs))), (
            f"partition {p}: offsets are not 0..{len(recs) - 1} (first gap near "
            f"{next((a for a, b in zip(offs, range(len(offs))) if a != b), None)})"
        )
        iseq = [int(dict(r["headers"])["i"]) for r in recs]
        bad = next((k for k in range(1, len(iseq)) if iseq[k] <= iseq[k - 1]), None)
        assert bad is None, f"partition {p}: production order broken at offset {bad}: i {iseq[bad - 1]} then {iseq[bad]}"

    key_parts = defaultdict(set)
    for r in records:
        key_parts[r["key"]].add(r["partition"])
    split = {k: sorted(v) for k, v in key_parts.items() if len(v) > 1}
    assert not split, f"{len(split)} keys spread over several partitions, e.g. {list(split.items())[:3]}"

    ends = end_offsets(bootstrap, topic, partitions)
    for p in range(partitions):
        assert ends[p] == len(per_part.get(p, [])), (
            f"partition {p}: end offset {ends[p]} but {len(per_part.get(p, []))} records consumed (extra data?)"
        )


class HealthyClient:
    """A well-behaved confluent-kafka producer running in a thread while a test misbehaves.

    On stop() it flushes, asserts every record was delivered, then reads the topic back and checks
    that each partition holds exactly the records sent, in order."""

    def __init__(self, bootstrap, topic="healthy", partitions=2, interval_s=0.005):
        self.bootstrap = bootstrap
        self.topic = topic
        self.partitions = partitions
        self.interval = interval_s
        self.sent = 0
        self.errors = []
        self.delivered = 0
        self._stop = threading.Event()
        self._thread = None

    def __enter__(self):
        from confluent_kafka import Producer

        create_topic(self.bootstrap, self.topic, self.partitions)
        self.producer = Producer({"bootstrap.servers": self.bootstrap, "acks": "all", "linger.ms": 1,
                                  "enable.idempotence": True, "message.timeout.ms": 30000})
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        # make sure traffic is flowing before the test misbehaves
        deadline = time.monotonic() + 20
        while self.delivered < 20 and time.monotonic() < deadline and not self.errors:
            time.sleep(0.02)
        assert self.delivered >= 20, f"healthy client could not get going: {self.errors[:3]}"
        return self

    def _cb(self, err, msg):
        if err is not None:
            self.errors.append(str(err))
        else:
            self.delivered += 1

    def _run(self):
        i = 0
        while not self._stop.is_set():
            self.producer.produce(self.topic, key=f"h{i % 7}".encode(), value=f"healthy-{i}".encode(),
                                  on_delivery=self._cb)
            self.sent += 1
            i += 1
            self.producer.poll(self.interval)

    def stop_and_verify(self, min_extra_after=20):
        # keep producing a little after the misbehaviour so "unaffected" covers the aftermath
        target = self.delivered + min_extra_after
        deadline = time.monotonic() + 20
        while self.delivered < target and time.monotonic() < deadline and not self.errors:
            time.sleep(0.02)
        self._stop.set()
        self._thread.join(10)
        left = self.producer.flush(30)
        assert not self.errors, f"healthy client saw delivery errors: {self.errors[:5]}"
        assert left == 0 and self.delivered == self.sent, (
            f"healthy client: sent {self.sent}, delivered {self.delivered}, unflushed {left}"
        )
        from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

        c = Consumer({"bootstrap.servers": self.bootstrap, "group.id": "spate-it-healthy",
                      "enable.auto.commit": False})
        c.assign([TopicPartition(self.topic, p, OFFSET_BEGINNING) for p in range(self.partitions)])
        got = defaultdict(list)
        n = 0
        deadline = time.monotonic() + 60
        while n < self.sent and time.monotonic() < deadline:
            for m in c.consume(500, 0.5):
                if m.error():
                    continue
                got[m.partition()].append((m.offset(), int(m.value().decode().split("-")[1])))
                n += 1
        c.close()
        assert n == self.sent, f"healthy client read back {n} of {self.sent} records"
        for p, recs in got.items():
            assert [o for o, _ in recs] == list(range(len(recs))), f"healthy partition {p}: offset gaps"
            seq = [i for _, i in recs]
            assert seq == sorted(seq), f"healthy partition {p}: order broken"

    def __exit__(self, *exc):
        self._stop.set()
        if self._thread:
            self._thread.join(10)


@contextlib.contextmanager
def loop_fs(name, size_bytes):
    """A fresh ext4 of `size_bytes` loop-mounted under target/it: yields (mount point, the
    loop device's path). Skips the test where it cannot be made (not root, no mkfs.ext4, a
    sandbox that forbids loop mounts)."""
    import pytest
    from conftest import IT_DIR

    if os.geteuid() != 0:
        pytest.skip("needs root to mount a loop device")
    base = IT_DIR / f"{name}-{uuid.uuid4().hex[:8]}"
    mnt = base / "mnt"
    mnt.mkdir(parents=True)
    img = base / "fs.img"
    with open(img, "wb") as f:
        f.truncate(size_bytes)
    run = lambda *cmd: subprocess.run(cmd, capture_output=True, text=True)  # noqa: E731
    made = run("mkfs.ext4", "-q", "-F", "-m", "0", str(img))
    if made.returncode != 0:
        shutil.rmtree(base, ignore_errors=True)
        pytest.skip(f"mkfs.ext4 unavailable here: {made.stderr.strip()}")
    mounted = run("mount", "-o", "loop", str(img), str(mnt))
    if mounted.returncode != 0:
        shutil.rmtree(base, ignore_errors=True)
        pytest.skip(f"this sandbox forbids loop mounts: {mounted.stderr.strip()}")
    try:
        device = run("findmnt", "-n", "-o", "SOURCE", str(mnt)).stdout.strip()
        yield mnt, device
    finally:
        if run("umount", str(mnt)).returncode != 0:
            run("umount", "-l", str(mnt))
        shutil.rmtree(base, ignore_errors=True)


class FaultyDisk:
    """An ext4 on a loop device whose reads fail on demand (see faultyfs.py): `mount(path)`
    puts it at `path`, `fail_reads()` makes every read of the device fail with EIO,
    `fail_syncs()` every cache flush, `heal()` makes them work again. Writes always succeed."""

    def __init__(self, base, server):
        self.base = base
        self.server = server
        self.device = None
        self.mounted_at = None

    def mount(self, path):
        run = lambda *cmd: subprocess.run(cmd, capture_output=True, text=True)  # noqa: E731
        made = run("losetup", "-f", "--show", str(self.base / "fuse" / "disk.img"))
        assert made.returncode == 0, f"losetup over the FUSE disk failed: {made.stderr.strip()}"
        self.device = made.stdout.strip()
        mounted = run("mount", "-o", "errors=continue", self.device, str(path))
        assert mounted.returncode == 0, f"mounting {self.device} failed: {mounted.stderr.strip()}"
        self.mounted_at = path

    def fail_reads(self):
        self._signal(signal.SIGUSR1, "reads fail")

    def fail_syncs(self):
        """Every fsync of the device's backing file fails with EIO (an fdatasync on the ext4
        above fails when the loop device's cache flush does)."""
        self._signal(signal.SIGHUP, "syncs fail")

    def heal(self):
        self._signal(signal.SIGUSR2, "reads work")

    def _signal(self, sig, said):
        log = self.base / "faultyfs.log"
        seen = log.read_text().count(said)
        self.server.send_signal(sig)
        deadline = time.monotonic() + 5
        while log.read_text().count(said) == seen:
            assert time.monotonic() < deadline, f"faultyfs did not answer {sig!r}"
            time.sleep(0.01)

    def close(self):
        run = lambda *cmd: subprocess.run(cmd, capture_output=True, text=True)  # noqa: E731
        if self.server.poll() is None:
            self.heal()  # unmounting writes back and reads
        if self.mounted_at is not None and run("umount", str(self.mounted_at)).returncode != 0:
            run("umount", "-l", str(self.mounted_at))
        if self.device:
            run("losetup", "-d", self.device)
        if run("umount", str(self.base / "fuse")).returncode != 0:
            run("umount", "-l", str(self.base / "fuse"))
        try:
            self.server.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.server.kill()
            self.server.wait()


@contextlib.contextmanager
def faulty_disk(name, size_bytes):
    """A fresh ext4 of `size_bytes` whose reads can be made to fail (FaultyDisk), on a loop
    device over a file served by tests/integration/faultyfs.py (FUSE): the kernel here has no
    device-mapper, and FUSE is in every stock kernel. Fails, never skips, where it cannot be
    made: the test is about real IO errors."""
    import pytest
    from conftest import IT_DIR

    missing = [t for t in ("mkfs.ext4", "losetup", "mount") if shutil.which(t) is None]
    if os.geteuid() != 0 or missing or not os.path.exists("/dev/fuse"):
        pytest.fail(f"a faulty disk needs root, /dev/fuse and {missing or 'util-linux'}: "
                    f"uid {os.geteuid()}, /dev/fuse {os.path.exists('/dev/fuse')}")
    base = IT_DIR / f"{name}-disk-{uuid.uuid4().hex[:8]}"
    (base / "fuse").mkdir(parents=True)
    img = base / "backing.img"
    with open(img, "wb") as f:
        f.truncate(size_bytes)
    made = subprocess.run(["mkfs.ext4", "-q", "-F", "-m", "0", str(img)],
                          capture_output=True, text=True)
    assert made.returncode == 0, f"mkfs.ext4 failed: {made.stderr.strip()}"
    log = open(base / "faultyfs.log", "w")
    server = subprocess.Popen(
        [sys.executable, str(Path(__file__).with_name("faultyfs.py")), str(base / "fuse"), str(img)],
        stdout=log, stderr=subprocess.STDOUT)
    disk = FaultyDisk(base, server)
    try:
        deadline = time.monotonic() + 10
        while "ready" not in (base / "faultyfs.log").read_text():
            assert server.poll() is None, \
                f"faultyfs failed: {(base / 'faultyfs.log').read_text().strip()}"
            assert time.monotonic() < deadline, "faultyfs did not mount"
            time.sleep(0.02)
        yield disk
    finally:
        disk.close()
        log.close()
        shutil.rmtree(base, ignore_errors=True)
