"""The full-disk and slow-disk paths without a loop device or a cgroup: the broker's injected
faults (storage/src/log/writer.rs) stand in for the disk. `SPATE_FAULT_DISK_FULL_WHILE=PATH`
fails every segment write with ENOSPC while PATH exists; `SPATE_FAULT_DISK_BYTES_PER_SEC=N`
makes every write take as long as N bytes/s allows. test_enospc.py and test_backpressure.py
check the same with a real full file system and a real blkio throttle."""

import time
import uuid

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from helpers import create_topic, end_offsets
from kafka_wire import Conn, Rec, fetch_v4, produce_v3, record_batch
from metrics_scrape import scrape
from test_backpressure import CACHE_BOUND, MIB, READ_AHEAD_BYTES, flood

pytestmark = pytest.mark.spate_only("Spate's fault injection, retry log lines and admin endpoint")

KAFKA_STORAGE_ERROR = 56


def consume_values(broker, topic, expected, timeout=30.0):
    """The values of partition 0 from its start, read until they hold `expected` (a retried
    batch the broker had already taken may be there twice: the producer is not idempotent)."""
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "unused",
                  "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    c.assign([TopicPartition(topic, 0, 0)])
    values = []
    deadline = time.monotonic() + timeout
    try:
        while not expected <= set(values) and time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is None:
                continue
            assert m.error() is None, m.error()
            values.append(m.value())
    finally:
        c.close()
    return values


def test_a_producer_retries_through_a_full_disk_and_nothing_acknowledged_is_lost(
        broker_factory, monkeypatch, tmp_path):
    full = tmp_path / "disk-is-full"
    monkeypatch.setenv("SPATE_FAULT_DISK_FULL_WHILE", str(full))
    b = broker_factory(settings={"log.retention.check.interval.ms": "100"})
    create_topic(b.bootstrap, "full", 1)
    create_topic(b.bootstrap, "other", 1)
    p = Producer({"bootstrap.servers": b.bootstrap, "acks": "all", "linger.ms": 5,
                  "message.timeout.ms": 120000, "retry.backoff.ms": 200})
    delivered, failed = [], []

    def on_delivery(err, msg):
        (failed if err is not None else delivered).append(err or msg.value())

    for i in range(20):
        p.produce("full", value=b"before-%d" % i, partition=0, on_delivery=on_delivery)
    p.produce("other", value=b"other", partition=0, on_delivery=on_delivery)
    assert p.flush(30) == 0 and not failed, failed

    full.touch()  # the disk is full from here
    for i in range(30):
        p.produce("full", value=b"during-%d" % i, partition=0, on_delivery=on_delivery)
    p.poll(0)
    b.wait_for_log("partition log write failed", timeout=30)
    with Conn(b.host, b.port) as conn:
        # Refused while full (KAFKA_STORAGE_ERROR, which the producer above keeps retrying);
        # reads of this and other partitions are served.
        err, _ = produce_v3(conn, "full", 0, record_batch([Rec(b"k", b"raw")]))
        assert err == KAFKA_STORAGE_ERROR, err
        err, hw, data = fetch_v4(conn, "other", 0)
        assert err == 0 and hw == 1 and b"other" in data
        err, _, data = fetch_v4(conn, "full", 0)
        assert err == 0 and b"before-0" in data
    time.sleep(2)  # several of the broker's once-a-second retries fail meanwhile
    assert len(delivered) == 21 and not failed, (len(delivered), failed)

    full.unlink()  # space "returns": the retries go through and the producer's batches land
    assert p.flush(60) == 0, "the producer's retries did not get through once space returned"
    assert not failed, failed
    expected = {b"before-%d" % i for i in range(20)} | {b"during-%d" % i for i in range(30)}
    assert set(delivered) - {b"other"} == expected
    values = consume_values(b, "full", expected)
    assert expected <= set(values), f"lost: {sorted(expected - set(values))}"
    assert set(values) <= expected, "nothing but what was produced"
    # ... also across a crash.
    b.kill()
    b.restart()
    assert expected <= set(consume_values(b, "full", expected))


DISK_BPS = 4 * MIB


def test_an_acks0_producer_faster_than_a_slow_disk_is_held_back_and_loses_nothing(
        broker_factory, monkeypatch):
    """test_backpressure.py's check with an injected slow disk instead of a blkio throttle."""
    monkeypatch.setenv("SPATE_FAULT_DISK_BYTES_PER_SEC", str(DISK_BPS))
    broker = broker_factory(cores=1, settings={
        "log.cache.bytes.per.partition": str(CACHE_BOUND),
        "queued.max.request.bytes": str(READ_AHEAD_BYTES),
    })
    topic = "slowdisk-" + uuid.uuid4().hex[:6]
    create_topic(broker.bootstrap, topic, 1)
    rss_before = scrape(broker).value("spate_process_resident_memory_bytes")
    producer, sent, peaks = flood(broker, topic, seconds=5)
    assert sent * 1000 > 5 * DISK_BPS, (sent, peaks)
    assert peaks["client_queue_full"] >= 1, peaks
    assert peaks["waiting"] >= 1, "produce waited for room in the write backlog"
    assert peaks["unwritten"] <= CACHE_BOUND + 2 * MIB, peaks
    assert peaks["cache"] <= 2 * CACHE_BOUND, peaks
    assert peaks["rss"] - rss_before < 128 * MIB, (peaks, rss_before)
    # acks=0: a record counts as sent once it is on the wire; the slow disk drains it all.
    assert producer.flush(120) == 0, "records never left the client"
    deadline = time.time() + 120
    while end_offsets(broker.bootstrap, topic, 1)[0] < sent and time.time() < deadline:
        time.sleep(0.5)
    assert end_offsets(broker.bootstrap, topic, 1) == {0: sent}, "every record sent is kept"
