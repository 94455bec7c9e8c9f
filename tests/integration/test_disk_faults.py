"""Disk read faults: one partition's directory lives on an ext4 whose device fails reads with
EIO on demand (helpers.faulty_disk: a loop device over a FUSE-served file, as a device-mapper
`error` target would, on a kernel without device-mapper). A fetch that reaches the device gets
KAFKA_STORAGE_ERROR (56) on the wire for that partition only; the partition is then offline as
Kafka's failed log dir is (produce, fetch and ListOffsets answer 56, even once the device reads
again); the broker stays up and serves the other partition; a restart recovers it with every
acknowledged record. The same for a failed fdatasync (the device's cache flush fails), which
also shows `flush.messages` and `flush.ms` syncing acks=1 writes (and nothing else doing so).
"""

import contextlib
import time

from confluent_kafka import Producer

from conftest import Broker
from helpers import create_topic, faulty_disk
from kafka_wire import (Conn, Rec, create_topics_v2, fetch_all_v4, fetch_v4, list_offsets_v1,
                        produce_v3, record_batch)

import pytest

pytestmark = pytest.mark.spate_only("Spate's partition directories moved onto a faulty disk")

KAFKA_STORAGE_ERROR = 56
RECORDS = 200
# 200 records of 20 kB: 4 MB, more than a reader's read-ahead, so a far offset hits the device.
VALUE_BYTES = 20_000
DISK_BYTES = 64 << 20


def value(tag, i):
    return (b"%s-%d-" % (tag, i)).ljust(VALUE_BYTES, b".")


def produce(bootstrap, topic, count, tag):
    """`count` records through librdkafka, idempotent, acks=all; all must be acknowledged."""
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5,
                  "enable.idempotence": True})
    failed = []
    for i in range(count):
        p.produce(topic, key=b"k%d" % i, value=value(tag, i),
                  on_delivery=lambda err, _msg: failed.append(err) if err else None)
        p.poll(0)
    assert p.flush(30) == 0, "records left unacknowledged"
    assert not failed, failed


def move_onto(disk, partition_dir):
    """Mounts `disk` at `partition_dir`, with the partition's files copied onto it."""
    aside = disk.base / "aside"
    partition_dir.rename(aside)
    partition_dir.mkdir()
    disk.mount(partition_dir)
    for f in aside.iterdir():
        (partition_dir / f.name).write_bytes(f.read_bytes())
        f.unlink()
    aside.rmdir()


def test_a_read_fault_takes_its_partition_offline_until_restart():
    b = Broker("diskfault")
    with faulty_disk("diskfault", DISK_BYTES) as disk:
        try:
            b.start()
            with Conn(b.host, b.port) as conn:
                for topic in ("faulty", "healthy"):
                    err, msg = create_topics_v2(conn, topic, 1)
                    assert err == 0, (topic, err, msg)
            produce(b.bootstrap, "faulty", RECORDS, b"faulty")
            produce(b.bootstrap, "healthy", 10, b"healthy")
            assert b.stop() == 0
            move_onto(disk, b.data_dir / "faulty-0")
            b.start()  # the tail cache starts empty: fetches read the device
            run_scenario(b, disk)
        except BaseException:
            print(b.log_tail())
            raise
        finally:
            b.kill()


def run_scenario(b, disk):
    with Conn(b.host, b.port) as conn:
        err, hw, data = fetch_v4(conn, "faulty", 0, 0, max_bytes=1)
        assert (err, hw) == (0, RECORDS) and value(b"faulty", 0) in data

        disk.fail_reads()
        # Far from what the first fetch read (and read ahead): this read reaches the device.
        err, _, data = fetch_v4(conn, "faulty", 0, RECORDS - 20)
        assert err == KAFKA_STORAGE_ERROR and data in (None, b""), err
        check_offline(conn, b)

        # Healed: still offline (Kafka keeps a failed log dir offline until restart).
        disk.heal()
        check_offline(conn, b)
    b.wait_for_log("partition log read failed")

    # The fault cleared and the broker restarted: the partition is back with every record.
    b.kill()
    b.start()
    with Conn(b.host, b.port) as conn:
        hw, recs = fetch_all_v4(conn, "faulty", 0)
        assert hw == RECORDS and [r[2] for r in recs] == [value(b"faulty", i) for i in range(RECORDS)]
        assert produce_v3(conn, "faulty", 0, one_batch(b"after"))[0] == 0


def check_offline(conn, b):
    """The faulty partition answers 56 to fetch, produce and ListOffsets; the other partition
    serves produce and fetch; the broker is up."""
    for offset in (0, RECORDS - 1):
        err, _, _ = fetch_v4(conn, "faulty", 0, offset)
        assert err == KAFKA_STORAGE_ERROR, (offset, err)
    err, _ = produce_v3(conn, "faulty", 0, one_batch(b"refused"))
    assert err == KAFKA_STORAGE_ERROR, err
    assert list_offsets_v1(conn, "faulty", [0])[0][0] == KAFKA_STORAGE_ERROR

    err, offset = produce_v3(conn, "healthy", 0, one_batch(b"healthy"))
    assert err == 0, err
    err, hw, data = fetch_v4(conn, "healthy", 0, 0)
    assert err == 0 and hw == offset + 1 and value(b"healthy", 0) in data
    assert b.alive()


def one_batch(tag):
    # A current timestamp: retention (7 days) must not remove it.
    return record_batch([Rec(key=b"k", value=tag)], base_timestamp=int(time.time() * 1000))


def test_a_failed_fdatasync_takes_its_partition_offline_until_restart():
    """The device's cache flush fails (EIO): the acks=all produce that needed the fdatasync gets
    KAFKA_STORAGE_ERROR, and the partition stays offline even once the device syncs again (the
    kernel may have dropped the pages it failed to write: Kafka's failed log dir); the other
    partition is served; a restart recovers every record acknowledged before the fault."""
    b = Broker("syncfault")
    with faulty_disk("syncfault", DISK_BYTES) as disk:
        try:
            b.start()
            with Conn(b.host, b.port) as conn:
                for topic in ("faulty", "healthy"):
                    err, msg = create_topics_v2(conn, topic, 1)
                    assert err == 0, (topic, err, msg)
            produce(b.bootstrap, "healthy", 10, b"healthy")
            assert b.stop() == 0
            move_onto(disk, b.data_dir / "faulty-0")
            b.start()
            with Conn(b.host, b.port) as conn:
                acked = [produce_v3(conn, "faulty", 0, one_batch(b"before-%d" % i)) for i in range(5)]
                assert acked == [(0, i) for i in range(5)], acked
                disk.fail_syncs()
                err, _ = produce_v3(conn, "faulty", 0, one_batch(b"unsynced"))
                assert err == KAFKA_STORAGE_ERROR, err
                disk.heal()
                for offset in (0, 4):
                    assert fetch_v4(conn, "faulty", 0, offset)[0] == KAFKA_STORAGE_ERROR
                assert produce_v3(conn, "faulty", 0, one_batch(b"refused"))[0] == KAFKA_STORAGE_ERROR
                assert list_offsets_v1(conn, "faulty", [0])[0][0] == KAFKA_STORAGE_ERROR
                err, offset = produce_v3(conn, "healthy", 0, one_batch(b"healthy"))
                assert err == 0 and offset == 10, (err, offset)
                assert b.alive()
            b.wait_for_log("fdatasync of the active segment: Input/output error")
            b.kill()
            b.start()
            with Conn(b.host, b.port) as conn:
                hw, recs = fetch_all_v4(conn, "faulty", 0)
                assert [r[2] for r in recs][:5] == [b"before-%d" % i for i in range(5)], recs
                assert produce_v3(conn, "faulty", 0, one_batch(b"after"))[0] == 0
        except BaseException:
            print(b.log_tail())
            raise
        finally:
            b.kill()


@pytest.mark.parametrize("flush", [{"flush.messages": "1"}, {"flush.ms": "500"}], ids=["messages", "ms"])
def test_flush_settings_fdatasync_acks_1_writes(flush):
    """A partition on a disk whose syncs fail, acks=1 writes from librdkafka: with
    `flush.messages=1` (or `flush.ms=500`) the broker fdatasyncs without an acks=all waiter, meets
    the failure and takes the partition offline. Its first failure must be that fdatasync: a
    broker ignoring the setting would fail only later, on a write, once ext4's own journal
    commit (every 5 s) has met the failing flush."""
    b = Broker("flush")
    with faulty_disk("flushed", DISK_BYTES) as disk, contextlib.ExitStack() as stop:
        stop.callback(b.kill)
        b.start()
        create_topic(b.bootstrap, "flushed", 1, config=flush)
        assert b.stop() == 0
        move_onto(disk, b.data_dir / "flushed-0")
        b.start()
        with Conn(b.host, b.port) as conn:  # the leader epoch checkpoint is written (and synced)
            assert produce_v3(conn, "flushed", 0, one_batch(b"first")) == (0, 0)
        disk.fail_syncs()
        # (flush.messages=1 syncs on this produce's own path, so it is answered 56 as in Kafka;
        # librdkafka retries it until message.timeout.ms)
        p = Producer({"bootstrap.servers": b.bootstrap, "acks": "1", "linger.ms": 0,
                      "message.timeout.ms": 3000})
        p.produce("flushed", key=b"k", value=b"v")
        p.flush(10)
        with Conn(b.host, b.port) as conn:
            deadline = time.monotonic() + 10  # flush.ms: within a second or so
            while (err := produce_v3(conn, "flushed", 0, one_batch(b"more"), acks=1)[0]) == 0:
                assert time.monotonic() < deadline, f"{flush} never synced an acks=1 write"
                time.sleep(0.1)
            assert err == KAFKA_STORAGE_ERROR, err
        log = b.wait_for_log("partition log write failed")
        failures = [ln for ln in log.splitlines() if "partition log write failed" in ln]
        assert failures and "fdatasync of the active segment" in failures[0], failures[:1]
