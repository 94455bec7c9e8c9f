"""The tail cache follows its readers (issue 21): a partition written to with nobody reading it
from memory keeps no written data in its cache, a consumer at the tail keeps what it is about
to read in memory (and lets it go once it leaves), and a consumer far behind reads from disk
without making the cache hold the tail. Read off `spate_log_cache_bytes{topic,partition}`."""

from __future__ import annotations

import threading
import time
import uuid

import pytest
from confluent_kafka import OFFSET_END, Consumer, Producer, TopicPartition

from cluster_faults import cluster_factory  # noqa: F401  (a fixture)
from helpers import create_topic
from metrics_scrape import scrape

pytestmark = pytest.mark.spate_only("Spate's tail cache, read off its /metrics page")

KIB, MIB = 1 << 10, 1 << 20
# A tail reader stays active for one to two windows of 5 s after its last tail read.
READER_WINDOWS_S = 10
VALUE = b"t" * 1000


def cached(broker, topic):
    return scrape(broker).value("spate_log_cache_bytes", topic=topic, partition="0")


def wait_cached(broker, topic, ok, timeout):
    """Polls the partition's cache bytes until `ok(bytes)`; returns the last value seen."""
    deadline = time.time() + timeout
    value = cached(broker, topic)
    while not ok(value) and time.time() < deadline:
        time.sleep(0.2)
        value = cached(broker, topic)
    return value


class Background:
    """A client running `run` on a thread from `with` to its end; `finish` closes it after."""

    def __init__(self):
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(10)
        self.finish()


class SteadyProducer(Background):
    """Produces `rate` 1000-byte records a second to partition 0 from a thread."""

    def __init__(self, broker, topic, rate):
        self.producer = Producer({"bootstrap.servers": broker.bootstrap, "acks": 1, "linger.ms": 5})
        self.topic, self.rate = topic, rate
        self.sent = 0
        super().__init__()

    def run(self):
        while not self.stop.is_set():
            started = time.time()
            for _ in range(self.rate // 10):
                self.producer.produce(self.topic, value=VALUE, partition=0)
                self.sent += 1
            self.producer.poll(0)
            self.stop.wait(max(0.0, 0.1 - (time.time() - started)))

    def finish(self):
        assert self.producer.flush(30) == 0


class TailConsumer(Background):
    """A consumer assigned at the end of partition 0, polling from a thread."""

    def __init__(self, broker, topic, **config):
        self.consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "tail-" + topic,
                                  "enable.auto.commit": False, **config})
        self.consumer.assign([TopicPartition(topic, 0, OFFSET_END)])
        self.received = 0
        self.errors = []
        super().__init__()

    def run(self):
        while not self.stop.is_set():
            msg = self.consumer.poll(0.2)
            if msg is None:
                continue
            if msg.error() is not None:
                self.errors.append(msg.error())
            else:
                self.received += 1

    def finish(self):
        self.consumer.close()


def test_a_partition_nobody_reads_keeps_no_written_data_in_memory(broker_factory):
    broker = broker_factory(cores=1)
    topic = "tail-none-" + uuid.uuid4().hex[:6]
    create_topic(broker.bootstrap, topic, 1)
    p = Producer({"bootstrap.servers": broker.bootstrap, "acks": 1, "linger.ms": 5})
    for _ in range(20_000):
        while True:
            try:
                p.produce(topic, value=VALUE, partition=0)
                break
            except BufferError:
                p.poll(0.05)
        p.poll(0)
    assert p.flush(30) == 0
    page = scrape(broker)
    assert page.value("spate_log_end_offset", topic=topic, partition="0") == 20_000
    # 20 MB written with the 8 MiB bound: before issue 21 the cache held all of its bound.
    assert page.value("spate_log_cache_bytes_max", topic=topic, partition="0") == 8 * MIB
    held = wait_cached(broker, topic, lambda b: b == 0, timeout=10)
    assert held == 0, f"{held} bytes of written data cached with no reader"


def test_a_tail_consumer_keeps_its_tail_in_memory_until_it_leaves(broker_factory):
    broker = broker_factory(cores=1)
    topic = "tail-reader-" + uuid.uuid4().hex[:6]
    create_topic(broker.bootstrap, topic, 1)
    with SteadyProducer(broker, topic, rate=200) as producer:
        with TailConsumer(broker, topic) as consumer:
            # Longer than two reader windows: the consumer's own fetches keep it active.
            time.sleep(READER_WINDOWS_S + 2)
            # What was produced in at least the last 5 s (200 KB/s) is still in memory.
            held = cached(broker, topic)
            assert 400 * KIB <= held <= 8 * MIB, held
            assert consumer.received > 0 and not consumer.errors, (consumer.received, consumer.errors)
        # The consumer left; the producer goes on: within two windows only the backlog stays.
        held = wait_cached(broker, topic, lambda b: b <= 128 * KIB, timeout=READER_WINDOWS_S + 5)
        assert held <= 128 * KIB, f"{held} bytes cached after the last reader left"
        assert producer.sent > 0


def test_a_consumer_far_behind_reads_from_disk_and_does_not_hold_the_tail(broker_factory):
    broker = broker_factory(cores=1)
    topic = "tail-lagging-" + uuid.uuid4().hex[:6]
    create_topic(broker.bootstrap, topic, 1)
    p = Producer({"bootstrap.servers": broker.bootstrap, "acks": 1, "linger.ms": 5})
    for _ in range(10_000):
        p.produce(topic, value=VALUE, partition=0)
        p.poll(0)
    assert p.flush(30) == 0
    # Prefetching at most 1 MiB: it stays about 9 MB behind the end while it reads 1000 records.
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "lagging-" + topic,
                  "enable.auto.commit": False, "queued.max.messages.kbytes": 1024,
                  "max.partition.fetch.bytes": 256 * KIB})
    try:
        c.assign([TopicPartition(topic, 0, 0)])
        for expected in range(1000):
            msg = c.poll(30)
            assert msg is not None and msg.error() is None, msg and msg.error()
            assert msg.offset() == expected and msg.value() == VALUE
        with SteadyProducer(broker, topic, rate=200):
            time.sleep(3)
            held = cached(broker, topic)
            assert held <= 128 * KIB, f"{held} bytes cached for a consumer reading from disk"
            msg = c.poll(30)
            assert msg is not None and msg.offset() == 1000, "it goes on reading where it was"
    finally:
        c.close()


def test_followers_are_tail_readers_of_their_leader(cluster_factory):
    """Replication factor 3: the followers' fetches keep the leader's tail in memory (they read
    it from there), while each follower's own copy, which nobody reads, keeps only its backlog."""
    cluster = cluster_factory({"replica.lag.time.max.ms": 3000})
    topic = "tail-followers-" + uuid.uuid4().hex[:6]
    create_topic(cluster.up()[0].bootstrap, topic, 1, replication_factor=3, config={"min.insync.replicas": 2})
    leader = cluster.wait_full_isr(topic, 1)[0].leader
    p = Producer({"bootstrap.servers": cluster.bootstrap(), "acks": "all", "linger.ms": 5})
    for _ in range(2000):
        p.produce(topic, value=VALUE, partition=0)
        p.poll(0)
    assert p.flush(60) == 0
    held = cached(cluster.node(leader), topic)
    assert 256 * KIB <= held <= 8 * MIB, f"leader holds {held} bytes for its followers"
    for node in cluster.up():
        if node.node_id != leader:
            held = wait_cached(node, topic, lambda b: b == 0, timeout=10)
            assert held == 0, f"follower {node.node_id} holds {held} bytes nobody reads"
