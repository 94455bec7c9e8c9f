"""Multi-node clusters on loopback and the faults tests inflict on them.

- `ClusterNode`, `start_cluster`, `metadata`, `wait_for`: a node of a multi-node cluster (a real
  `spate start --node-id N --controller-quorum ...` process) and how test_multi_node.py and
  test_replication.py start and query them.
- `Cluster` / the `cluster_factory` fixture (in test modules that import it): the nodes of one
  test, with kill -9, SIGSTOP/SIGCONT and restart of a node, partition state from Metadata v7
  (leader, leader epoch, replicas, ISR) asked of a node that is up, and waits on it. Teardown
  resumes every paused node and kills every node, whatever the test did.
- `AckedProducer` (confluent-kafka in a thread) and `JavaAckedProducer` (the Java client, one
  source file run by `java`): idempotent acks=all producers of keyed records that remember the
  partition and offset of every acknowledgement; `GroupConsumer`: a confluent-kafka consumer
  group member in a thread; `read_all` and `check_acked`: read a topic back and check every
  acknowledged record is there exactly once, at its offset, in order per key.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path

import pytest

import kafka_wire as w
from conftest import CORES, SPATE_BIN, Broker, free_port

HERE = Path(__file__).resolve().parent

SESSION_TIMEOUT_MS = 3000
FAST_FENCING = {"broker.session.timeout.ms": SESSION_TIMEOUT_MS, "broker.heartbeat.interval.ms": 500}
LEADER_LINE = re.compile(r"active controller is node (\d+) \(term (\d+)\)")


class ClusterNode(Broker):
    """One node of a multi-node cluster; `port` is its Kafka listener."""

    def __init__(self, node_id: int, quorum_ports: dict[int, int], roles="broker,controller",
                 settings=None, cores: int = CORES, rack: str | None = None):
        super().__init__(f"node{node_id}", settings={**FAST_FENCING, **(settings or {})}, cores=cores,
                         extra_args=["--rack", rack] if rack else [])
        self.node_id = node_id
        self.roles = roles
        self.quorum = ",".join(f"{i}@127.0.0.1:{p}" for i, p in sorted(quorum_ports.items()))

    def argv(self) -> list[str]:
        return super().argv() + [
            "--node-id", str(self.node_id), "--roles", self.roles, "--controller-quorum", self.quorum,
        ]

    def quorum_port(self) -> int:
        """This voter's controller port (its own entry of the quorum)."""
        entry = next(e for e in self.quorum.split(",") if e.startswith(f"{self.node_id}@"))
        return int(entry.rsplit(":", 1)[1])

    def active_controller(self) -> int | None:
        found = LEADER_LINE.findall(self.log_path.read_text(encoding="utf-8", errors="replace"))
        return int(found[-1][0]) if found else None


def start_cluster(n=3, settings=None, racks=None) -> list[ClusterNode]:
    """n combined broker+controller nodes (ids 1..n); `racks`: {node id: its --rack}."""
    ports = {i: free_port() for i in range(1, n + 1)}
    nodes = [ClusterNode(i, ports, settings=settings, rack=(racks or {}).get(i)) for i in range(1, n + 1)]
    for node in nodes:  # every node waits for a quorum of the others before it is ready
        node.spawn()
    for node in nodes:
        node.await_ready()
    return nodes


def metadata(node: Broker, topics=None):
    """(broker ids, {topic: (error, {partition: (error, leader)})}) as `node` answers."""
    with w.Conn(node.host, node.port) as c:
        brokers, found = w.metadata_v1(c, topics)
    return sorted(b[0] for b in brokers), found


def wait_for(what, predicate, timeout=15.0, seen=None):
    """Polls `predicate` until it returns something true; `seen()` (optional) describes the last
    state observed for the failure message."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
        except (OSError, ValueError, KeyError, w.Closed) as e:  # a node starting or just killed
            last = e
        if last and not isinstance(last, Exception):
            return last
        time.sleep(0.1)
    detail = f"{last!r}" if seen is None else f"{last!r}; {seen()}"
    raise AssertionError(f"not within {timeout}s: {what} (last: {detail})")


# ---------------------------------------------------------------------------------------------
# a cluster under test and its faults
# ---------------------------------------------------------------------------------------------
def check_settings_known(settings: dict):
    """Fails the test at once, with the broker's own words, when this build refuses a setting
    (e.g. `replica.lag.time.max.ms` before follower replication exists)."""
    argv = [str(SPATE_BIN), "start", "--print-config"]
    for k, v in settings.items():
        argv += ["--set", f"{k}={v}"]
    p = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    if p.returncode != 0:
        pytest.fail(f"this spate build refuses the cluster settings: {p.stderr.strip()}")


class Cluster:
    """The nodes of one test. Brokers are `brokers` (their node ids are the replica ids);
    `controllers` are controller-only voters (the dedicated-quorum layout), never faulted."""

    def __init__(self, brokers: list[ClusterNode], controllers: list[ClusterNode] = ()):
        self.brokers = list(brokers)
        self.controllers = list(controllers)
        self.paused: set[int] = set()
        self.last_seen: dict = {}  # node id -> the last Metadata v7 partitions it answered

    def seen(self) -> str:
        return "last Metadata seen: " + "; ".join(
            f"node {n}: {{{', '.join(f'{p}: leader {m.leader} epoch {m.leader_epoch} isr {m.isr}' for p, m in sorted(v.items()))}}}"
            for n, v in sorted(self.last_seen.items()))

    # ---- nodes
    def node(self, node_id: int) -> ClusterNode:
        return next(n for n in self.brokers if n.node_id == node_id)

    def ids(self) -> list[int]:
        return [n.node_id for n in self.brokers]

    def up(self, exclude=()) -> list[ClusterNode]:
        """Brokers running and not paused (they answer requests)."""
        return [n for n in self.brokers if n.alive() and n.node_id not in self.paused and n.node_id not in exclude]

    def bootstrap(self, exclude=()) -> str:
        return ",".join(n.bootstrap for n in self.up(exclude))

    def kill(self, node_id: int):
        """kill -9 (works on a paused process too)."""
        self.node(node_id).kill()
        self.paused.discard(node_id)

    def restart(self, node_id: int):
        node = self.node(node_id)
        assert not node.alive(), f"node {node_id} still running"
        node.start()

    def pause(self, node_id: int):
        """SIGSTOP the node's process group: it keeps its sockets but answers nothing."""
        node = self.node(node_id)
        assert node.alive(), f"node {node_id} is not running"
        os.killpg(node.proc.pid, signal.SIGSTOP)
        self.paused.add(node_id)

    def resume(self, node_id: int):
        node = self.node(node_id)
        if node.proc is not None:
            try:
                os.killpg(node.proc.pid, signal.SIGCONT)
            except (ProcessLookupError, PermissionError):
                pass
        self.paused.discard(node_id)

    def close(self, keep: bool, show_logs: bool):
        for node in self.brokers + self.controllers:
            if node.proc is not None:  # never leave a stopped process behind
                try:
                    os.killpg(node.proc.pid, signal.SIGCONT)
                except (ProcessLookupError, PermissionError):
                    pass
        self.paused.clear()
        for node in self.brokers + self.controllers:
            if show_logs:
                sys.stderr.write("\n" + node.log_tail(80) + "\n")
            node.cleanup(keep)
            if not keep:
                try:
                    node.log_path.unlink()
                except OSError:
                    pass

    # ---- partition state (Metadata v7)
    def partitions(self, topic: str, via: int | None = None) -> dict[int, w.PartitionMeta]:
        """{partition: PartitionMeta} as broker `via` (default: the first broker up) answers."""
        node = self.node(via) if via is not None else self.up()[0]
        with w.Conn(node.host, node.port, timeout=5) as c:
            _, _, found = w.metadata_v7(c, [topic])
        err, parts = found[topic]
        if err != 0:
            raise ValueError(f"{topic}: error {err} from node {node.node_id}")
        self.last_seen[node.node_id] = parts
        return parts

    def state(self, topic: str, partition: int, via: int | None = None) -> w.PartitionMeta:
        return self.partitions(topic, via)[partition]

    def live_brokers(self, via: int | None = None) -> list[int]:
        node = self.node(via) if via is not None else self.up()[0]
        with w.Conn(node.host, node.port, timeout=5) as c:
            brokers, _, _ = w.metadata_v7(c, [])
        return sorted(b[0] for b in brokers)

    def wait_full_isr(self, topic: str, partitions: int, rf: int = 3, timeout: float = 30.0):
        """Until every broker up names a leader for every partition and an ISR of all `rf`
        replicas, and they agree; returns {partition: PartitionMeta}."""

        def agreed():
            views = [self.partitions(topic, n.node_id) for n in self.up()]
            first = views[0]
            ok = len(first) == partitions and all(
                m.error == 0 and m.leader in m.replicas and len(m.replicas) == rf
                and sorted(m.isr) == sorted(m.replicas) for m in first.values())
            same = all({p: (m.leader, m.leader_epoch, sorted(m.isr)) for p, m in v.items()}
                       == {p: (m.leader, m.leader_epoch, sorted(m.isr)) for p, m in first.items()}
                       for v in views)
            return ok and same and first

        self.last_seen = {}
        return wait_for(f"{topic}: {partitions} partitions led with all {rf} replicas in sync", agreed, timeout,
                        self.seen)

    def wait_isr(self, topic: str, partition: int, isr: set[int], via: int, timeout: float = 20.0):
        """Until `via` (the leader) reports exactly `isr` for the partition; returns its state."""
        self.last_seen = {}
        return wait_for(f"{topic}/{partition}: ISR {sorted(isr)} at node {via}",
                        lambda: (lambda m: set(m.isr) == set(isr) and m)(self.state(topic, partition, via)),
                        timeout, self.seen)

    def wait_new_leader(self, topic: str, partition: int, old: w.PartitionMeta, timeout: float = None):
        """Until the brokers up agree on a leader other than `old.leader` with a larger leader
        epoch (the old one killed or paused); returns the new state."""
        timeout = timeout or SESSION_TIMEOUT_MS / 1000 + 15

        def elected():
            views = [self.state(topic, partition, n.node_id) for n in self.up()]
            m = views[0]
            ok = m.leader >= 0 and m.leader != old.leader and m.leader_epoch > old.leader_epoch
            return ok and all((v.leader, v.leader_epoch) == (m.leader, m.leader_epoch) for v in views) and m

        self.last_seen = {}
        return wait_for(f"{topic}/{partition}: a leader other than {old.leader} (epoch > {old.leader_epoch})",
                        elected, timeout, self.seen)

    def wait_all_led(self, topic: str, partitions: int, not_by=(), timeout: float = None):
        """Until every partition has a leader, none of them in `not_by`; returns the states."""
        timeout = timeout or SESSION_TIMEOUT_MS / 1000 + 15

        def led():
            parts = self.partitions(topic)
            return len(parts) == partitions and all(
                m.error == 0 and m.leader >= 0 and m.leader not in not_by for m in parts.values()) and parts

        self.last_seen = {}
        return wait_for(f"{topic}: every partition led (not by {list(not_by)})", led, timeout, self.seen)

    def conn(self, node_id: int, timeout: float = 10.0) -> w.Conn:
        node = self.node(node_id)
        return w.Conn(node.host, node.port, timeout=timeout)


def start_replicated_cluster(settings: dict, n: int = 3, dedicated_controller: bool = False,
                             racks=None) -> Cluster:
    """n brokers (node ids 1..n). Combined broker+controller nodes by default; with
    `dedicated_controller` one controller-only voter (id n+1) and n broker-only nodes, so any
    number of brokers can be stopped without losing the controller quorum. `racks`: {node id:
    its --rack} (combined nodes only)."""
    check_settings_known({**FAST_FENCING, **settings})
    if not dedicated_controller:
        return Cluster(start_cluster(n, settings, racks))
    assert not racks, "racks are for combined nodes only"
    cid = n + 1
    cport = free_port()
    voter = ClusterNode(cid, {cid: cport}, roles="controller", settings=settings, cores=1)
    cluster = Cluster([ClusterNode(i, {cid: cport}, roles="broker", settings=settings) for i in range(1, n + 1)],
                      [voter])
    voter.spawn()  # a controller-only node prints no Kafka 'ready' line: wait for its port
    wait_for("the controller voter listening",
             lambda: socket.create_connection(("127.0.0.1", cport), 1).close() or True, timeout=30)
    for b in cluster.brokers:
        b.spawn()
    for b in cluster.brokers:
        b.await_ready()
    return cluster


@pytest.fixture
def cluster_factory(request):
    """start(settings, n=3, dedicated_controller=False, racks=None) -> a running Cluster; every
    node is resumed (SIGCONT) and killed after the test; logs and data dirs are kept when it fails."""
    made: list[Cluster] = []
    started: list[ClusterNode] = []

    def start(settings: dict, n: int = 3, dedicated_controller: bool = False, racks=None) -> Cluster:
        import conftest

        before = len(conftest._ALL_BROKERS)
        try:
            c = start_replicated_cluster(settings, n, dedicated_controller, racks)
        finally:  # nodes of a cluster that failed to start are torn down too
            started.extend(conftest._ALL_BROKERS[before:])
        made.append(c)
        return c

    yield start

    failed = any(getattr(request.node, f"rep_{w_}", None) and getattr(request.node, f"rep_{w_}").failed
                 for w_ in ("setup", "call"))
    keep = failed or bool(os.environ.get("SPATE_IT_KEEP"))
    for c in made:
        c.close(keep, show_logs=failed)
    for node in started:  # any node not in a returned Cluster
        if not any(node in c.brokers + c.controllers for c in made):
            try:
                os.killpg(node.proc.pid, signal.SIGCONT)
            except (AttributeError, ProcessLookupError, PermissionError):
                pass
            node.cleanup(keep)


# ---------------------------------------------------------------------------------------------
# producers that remember what was acknowledged, a consumer group member, reading back
# ---------------------------------------------------------------------------------------------
def key_of(i: int, keys: int) -> str:
    return f"k{i % keys}"


def value_of(i: int) -> str:
    return f"v-{i}"


class AckedProducer:
    """An idempotent acks=all confluent-kafka producer in a thread: record i has key
    `k{i % keys}` and value `v-{i}`. `acked[i] = (partition, offset)` from the delivery report;
    `errors` every delivery error, `fatal` the fatal ones (delivery or error_cb)."""

    def __init__(self, bootstrap: str, topic: str, keys: int = 24, interval_s: float = 0.002,
                 max_s: float = 240.0, conf: dict | None = None, first: int = 0, count: int | None = None):
        self.bootstrap, self.topic, self.keys, self.first = bootstrap, topic, keys, first
        self.count = count  # stop producing after this many (None: until stop())
        self.interval, self.max_s = interval_s, max_s
        self.conf = conf or {}
        self.acked: dict[int, tuple[int, int]] = {}
        self.errors: list[tuple[int, str]] = []
        self.fatal: list[str] = []
        self.sent = 0
        self.unflushed = None
        self.done = False
        self._stop = threading.Event()
        self._thread = None

    def start(self):
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _on_error(self, err):
        if err.fatal():
            self.fatal.append(str(err))

    def _run(self):
        from confluent_kafka import Producer

        p = Producer({"bootstrap.servers": self.bootstrap, "enable.idempotence": True, "acks": "all",
                      "linger.ms": 5, "message.timeout.ms": 120000, "request.timeout.ms": 10000,
                      "retry.backoff.ms": 100, "error_cb": self._on_error, **self.conf})

        def report(i):
            def on_delivery(err, msg):
                if err is None:
                    self.acked[i] = (msg.partition(), msg.offset())
                else:
                    self.errors.append((i, err.name()))
                    if err.fatal():
                        self.fatal.append(str(err))
            return on_delivery

        deadline = time.monotonic() + self.max_s
        i = self.first
        while not self._stop.is_set() and time.monotonic() < deadline and (
                self.count is None or i < self.first + self.count):
            try:
                p.produce(self.topic, key=key_of(i, self.keys).encode(), value=value_of(i).encode(),
                          on_delivery=report(i))
                i += 1
                self.sent = i - self.first
            except BufferError:
                pass
            p.poll(self.interval)
        self.unflushed = p.flush(90)
        self.done = True

    def wait_acked(self, count: int, timeout: float = 30.0):
        """Until `count` records are acknowledged in all (progress after a fault)."""
        wait_for(f"{count} records acknowledged (have {len(self.acked)}, errors {self.errors[-3:]})",
                 lambda: len(self.acked) >= count or self.fatal, timeout)
        assert not self.fatal, f"fatal producer error: {self.fatal}"

    def stop(self):
        self._stop.set()
        if self._thread:
            self._thread.join(120)
            assert not self._thread.is_alive(), "producer thread did not finish"

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self._stop.set()
        if self._thread:
            self._thread.join(120)


class JavaAckedProducer:
    """The same records and bookkeeping as AckedProducer through the Java client
    (java/AckedProducer.java, run as a source file with the client's jars): it prints one JSON
    line per acknowledgement or error and stops (flush, close) when its stdin closes."""

    SOURCE = HERE / "java" / "AckedProducer.java"

    def __init__(self, bootstrap: str, topic: str, keys: int = 24, interval_ms: int = 2, max_s: int = 240):
        self.args = [bootstrap, topic, keys, interval_ms, max_s]
        self.acked: dict[int, tuple[int, int]] = {}
        self.errors: list[tuple[int, str]] = []
        self.fatal: list[str] = []
        self.sent = 0
        self.unflushed = None
        self.proc = None
        self._reader = None
        self._stderr: list[str] = []

    def start(self):
        import helpers

        lib = helpers.CLIENTS / "java" / "lib"
        if not lib.is_dir():
            pytest.fail(f"Java client jars missing ({lib}): run ci/install-deps")
        cmd = ["java", *helpers.SHORT_JVM, "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn", "-cp", f"{lib}/*",
               str(self.SOURCE), *[str(a) for a in self.args]]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        threading.Thread(target=lambda: self._stderr.extend(self.proc.stderr), daemon=True).start()
        return self

    def _read(self):
        for line in self.proc.stdout:
            if not line.startswith("{"):
                continue
            ev = json.loads(line)
            if "o" in ev:
                self.acked[ev["i"]] = (ev["p"], ev["o"])
            elif "error" in ev:
                self.errors.append((ev["i"], ev["error"]))
                if ev.get("fatal"):
                    self.fatal.append(ev["error"])
            elif "sent" in ev:
                self.sent = ev["sent"]
                self.unflushed = ev["sent"] - ev["answered"]

    def wait_acked(self, count: int, timeout: float = 30.0):
        wait_for(f"{count} records acknowledged (have {len(self.acked)}, errors {self.errors[-3:]}, "
                 f"stderr {''.join(self._stderr[-5:])})",
                 lambda: len(self.acked) >= count or self.fatal or self.proc.poll() is not None, timeout)
        assert not self.fatal, f"fatal producer error: {self.fatal}"
        assert self.proc.poll() is None, f"java producer exited {self.proc.returncode}: {''.join(self._stderr[-20:])}"

    def stop(self):
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        try:
            self.proc.wait(120)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            raise AssertionError("java producer did not stop within 120 s of its stdin closing")
        self._reader.join(10)
        assert self.proc.returncode == 0, f"java producer exited {self.proc.returncode}: {''.join(self._stderr[-20:])}"

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


class GroupConsumer:
    """A confluent-kafka consumer group member in a thread (auto commit): `seen[(p, o)]` is
    (key, value) of every record it got, `deliveries` how many it got in all (a record may come
    twice after a rebalance or a coordinator change: at least once)."""

    def __init__(self, bootstrap: str, topic: str, group: str, max_s: float = 240.0):
        self.bootstrap, self.topic, self.group, self.max_s = bootstrap, topic, group, max_s
        self.seen: dict[tuple[int, int], tuple[str, str]] = {}
        self.deliveries = 0
        self.conflicts: list = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = None

    def start(self):
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self):
        from confluent_kafka import Consumer

        c = Consumer({"bootstrap.servers": self.bootstrap, "group.id": self.group, "auto.offset.reset": "earliest",
                      "enable.auto.commit": True, "auto.commit.interval.ms": 500, "session.timeout.ms": 10000,
                      "heartbeat.interval.ms": 1000, "enable.partition.eof": False})
        c.subscribe([self.topic])
        deadline = time.monotonic() + self.max_s
        try:
            while not self._stop.is_set() and time.monotonic() < deadline:
                for m in c.consume(500, 0.2):
                    if m.error():
                        self.errors.append(str(m.error()))
                        continue
                    pos = (m.partition(), m.offset())
                    kv = (m.key().decode(), m.value().decode())
                    if self.seen.get(pos, kv) != kv:  # the same offset twice with another record
                        self.conflicts.append((pos, self.seen[pos], kv))
                    self.seen[pos] = kv
                    self.deliveries += 1
        finally:
            c.close()

    def wait_seen(self, positions, timeout: float = 60.0):
        positions = set(positions)
        wait_for(f"the group consumer seeing all {len(positions)} positions",
                 lambda: positions <= self.seen.keys(), timeout)

    def stop(self):
        self._stop.set()
        if self._thread:
            self._thread.join(30)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def read_all(bootstrap: str, topic: str, partitions: int, timeout: float = 60.0):
    """Every record of the topic from offset 0 to each partition's high watermark, read by an
    assign-style confluent-kafka consumer: ({(partition, offset): (key, value)}, {partition: high})."""
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "spate-it-read-all", "enable.auto.commit": False,
                  "enable.partition.eof": False})
    try:
        highs = {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=15)[1] for p in range(partitions)}
        c.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
        got: dict[tuple[int, int], tuple[str, str]] = {}
        counts = defaultdict(int)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and any(counts[p] < highs[p] for p in range(partitions)):
            for m in c.consume(1000, 0.5):
                assert m.error() is None, m.error()
                if m.offset() < highs[m.partition()]:
                    got[(m.partition(), m.offset())] = (m.key().decode(), m.value().decode())
                    counts[m.partition()] += 1
        return got, highs
    finally:
        c.close()


def check_acked(acked: dict[int, tuple[int, int]], log: dict, highs: dict, keys: int):
    """Every acknowledged record is in `log` exactly once, at the offset of its acknowledgement;
    offsets have no holes; records of a key are in production order; no value twice."""
    for p, high in highs.items():
        have = sorted(o for (q, o) in log if q == p)
        assert have == list(range(high)), (
            f"partition {p}: read {len(have)} records below high watermark {high} (holes: "
            f"{sorted(set(range(high)) - set(have))[:10]})")
    wrong = [(i, pos, log.get(pos)) for i, pos in sorted(acked.items())
             if log.get(pos) != (key_of(i, keys), value_of(i))]
    assert not wrong, (f"{len(wrong)} of {len(acked)} acknowledged records are not at their acknowledged "
                       f"offset; first (i, (partition, offset), found there): {wrong[:5]}")
    where = defaultdict(list)
    for pos, (_, v) in log.items():
        where[v].append(pos)
    twice = {v: ps for v, ps in where.items() if len(ps) > 1}
    assert not twice, f"{len(twice)} values stored more than once, e.g. {list(twice.items())[:5]}"
    per_key = defaultdict(list)
    for (p, o), (k, v) in sorted(log.items()):
        per_key[(k, p)].append(int(v.split("-", 1)[1]))
    parts_of_key = defaultdict(set)
    for k, p in per_key:
        parts_of_key[k].add(p)
    split = {k: ps for k, ps in parts_of_key.items() if len(ps) > 1}
    assert not split, f"keys in more than one partition: {split}"
    for (k, p), seq in per_key.items():
        bad = next((j for j in range(1, len(seq)) if seq[j] <= seq[j - 1]), None)
        assert bad is None, f"key {k} (partition {p}): order broken: v-{seq[bad - 1]} then v-{seq[bad]}"
