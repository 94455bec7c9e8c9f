"""Crash safety through real clients: kill -9 in the middle of an acks=all produce storm loses
no acknowledged record; a segment tail overwritten with garbage is truncated at start to the
last valid entry, logged, and everything before it is served."""

import struct
import threading
import time

import pytest

from confluent_kafka import Consumer, Producer, TopicPartition

from helpers import create_topic

ENTRY_MAGIC = b"SPE1"
ENTRY_HEADER_BYTES = 40


def consume_all(bootstrap, topic, partitions, timeout=30.0):
    """{(partition, offset): value} of everything up to each partition's high watermark."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "unused",
                  "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    try:
        highs = {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                 for p in range(partitions)}
        c.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
        got = {}
        counts = [0] * partitions
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(counts[p] >= highs[p] for p in range(partitions)):
                break
            m = c.poll(0.5)
            if m is None:
                continue
            assert m.error() is None, m.error()
            got[(m.partition(), m.offset())] = m.value()
            counts[m.partition()] += 1
        return got, highs
    finally:
        c.close()


def test_kill9_during_acks_all_produce_storm_loses_no_acknowledged_record(broker):
    partitions = 4
    create_topic(broker.bootstrap, "storm", partitions)
    acked = {}
    stop = threading.Event()

    def storm():
        p = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all", "linger.ms": 1,
                      "message.timeout.ms": 5000, "retries": 0, "enable.idempotence": False})

        def on_delivery(err, msg):
            if err is None:
                acked[(msg.partition(), msg.offset())] = msg.value()

        i = 0
        while not stop.is_set():
            try:
                p.produce("storm", value=b"v-%d" % i, key=b"%d" % i, on_delivery=on_delivery)
                i += 1
            except BufferError:
                pass
            p.poll(0.0005 if i % 100 == 0 else 0)
        p.flush(10)

    t = threading.Thread(target=storm)
    t.start()
    deadline = time.monotonic() + 30
    while len(acked) < 5000 and time.monotonic() < deadline:
        time.sleep(0.05)
    broker.kill()  # SIGKILL while the storm goes on
    at_kill = len(acked)
    stop.set()
    t.join(30)
    assert at_kill >= 5000, f"only {at_kill} acknowledged before the kill"
    broker.restart()
    got, highs = consume_all(broker.bootstrap, "storm", partitions)
    missing = [k for k, v in acked.items() if got.get(k) != v]
    assert not missing, f"{len(missing)} of {len(acked)} acknowledged records lost or changed: {missing[:5]}"
    assert sum(highs.values()) >= len(acked)


def entry_positions(data):
    """Start positions of the valid-looking entries of a segment file."""
    pos, out = 0, []
    while pos + ENTRY_HEADER_BYTES <= len(data) and data[pos:pos + 4] == ENTRY_MAGIC:
        batch_len = struct.unpack_from("<I", data, pos + 4)[0]
        out.append(pos)
        pos += (ENTRY_HEADER_BYTES + batch_len + 7) // 8 * 8
    return out, pos


@pytest.mark.spate_only("writes into Spate's segment files")
def test_garbage_tail_is_truncated_to_the_last_valid_entry(broker):
    create_topic(broker.bootstrap, "torn", 1)
    p = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all", "linger.ms": 0})
    for i in range(10):  # ten separate batches: ten entries
        p.produce("torn", value=b"value-%d" % i, partition=0)
        assert p.flush(10) == 0
    assert broker.stop() == 0
    seg = broker.data_dir / "torn-0" / f"{0:020}.log"
    data = bytearray(seg.read_bytes())
    starts, end = entry_positions(data)
    assert len(starts) == 10, starts
    # Garbage over the second half of the last entry and past the logical end.
    last = starts[-1]
    garbage = bytes((i * 37 + 11) % 251 + 1 for i in range(end - last + 300))
    cut = last + ENTRY_HEADER_BYTES // 2
    data[cut:cut + len(garbage)] = garbage
    seg.write_bytes(bytes(data))
    broker.restart()
    assert "truncating torn segment tail" in broker.log_path.read_text()
    got, highs = consume_all(broker.bootstrap, "torn", 1)
    assert highs[0] == 9
    assert [got[(0, o)] for o in range(9)] == [b"value-%d" % i for i in range(9)]
    # The log goes on from the truncation point.
    p = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all"})
    p.produce("torn", value=b"after", partition=0)
    assert p.flush(10) == 0
    got, highs = consume_all(broker.bootstrap, "torn", 1)
    assert highs[0] == 10 and got[(0, 9)] == b"after"
    # A second restart (kill -9) keeps it all.
    broker.kill()
    broker.restart()
    got, highs = consume_all(broker.bootstrap, "torn", 1)
    assert highs[0] == 10 and got[(0, 9)] == b"after"
