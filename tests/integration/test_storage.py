"""Storage engine behaviour through real clients: retention by size and time, DeleteRecords,
consumers reset to the new log start, offsets_for_times on retained data and inside
compressed batches, ListOffsets MAX_TIMESTAMP, LogAppendTime,
max.message.bytes, and topic configs changed at runtime with IncrementalAlterConfigs."""

import os
import struct
import time

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewTopic,
)

from kafka import KafkaConsumer
from kafka import TopicPartition as KafkaTopicPartition

from kafka_wire import Conn, fetch_v4, list_offsets_v7

OFFSET_OUT_OF_RANGE = 1
FAST_CHECKS = {"log.retention.check.interval.ms": "200"}


def admin(broker):
    return AdminClient({"bootstrap.servers": broker.bootstrap})


def create(broker, topic, partitions=1, **configs):
    a = admin(broker)  # keep the client alive until its futures resolve
    futures = a.create_topics(
        [NewTopic(topic, num_partitions=partitions, replication_factor=1, config=configs)]
    )
    futures[topic].result(30)


def produce(broker, topic, values, timestamps=None, partition=0):
    # Small batches, so small segments roll often.
    p = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all", "linger.ms": 5, "batch.size": 4096})
    errors = []

    def on_delivery(err, _msg):
        if err is not None:
            errors.append(err)

    for i, v in enumerate(values):
        kw = {"timestamp": timestamps[i]} if timestamps else {}
        p.produce(topic, value=v, key=b"k%d" % i, partition=partition, on_delivery=on_delivery, **kw)
        p.poll(0)
    assert p.flush(30) == 0
    return errors


def consumer(broker, **extra):
    conf = {
        "bootstrap.servers": broker.bootstrap,
        "group.id": "unused",
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
    }
    conf.update(extra)
    return Consumer(conf)


def watermarks(broker, topic, partition=0):
    c = consumer(broker)
    try:
        return c.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
    finally:
        c.close()


def read_from_start(broker, topic, high, timeout=10.0):
    """Partition 0's messages from offset 0 through `high - 1` (or what arrives in `timeout`),
    read with a confluent consumer."""
    c = consumer(broker)
    c.assign([TopicPartition(topic, 0, 0)])
    seen = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is None:
                continue
            assert m.error() is None, m.error()
            seen.append(m)
            if m.offset() == high - 1:
                break
    finally:
        c.close()
    return seen


def wait_for(predicate, timeout=20.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def consume_from(broker, topic, offset, count, timeout=20.0):
    c = consumer(broker)
    c.assign([TopicPartition(topic, 0, offset)])
    out = []
    deadline = time.monotonic() + timeout
    try:
        while len(out) < count and time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is None:
                continue
            assert m.error() is None, m.error()
            out.append(m)
    finally:
        c.close()
    return out


@pytest.mark.spate_only("reads Spate's segment files in its data dir")
def test_size_retention_deletes_segments_and_resets_a_consumer_to_the_log_start(broker_factory):
    b = broker_factory(settings=FAST_CHECKS)
    create(b, "sized", **{"segment.bytes": "16384", "retention.bytes": "65536"})
    base_ts = int(time.time() * 1000) - 10_000
    n = 3000
    assert produce(b, "sized", [b"x" * 100 for _ in range(n)], [base_ts + i for i in range(n)]) == []
    seg_dir = b.data_dir / "sized-0"
    # Retention passes run every 200 ms; segments close as the writer catches up, so wait
    # until the log is down to retention.bytes (64 KiB) plus at most a few 16 KiB segments.
    wait_for(lambda: len(list(seg_dir.glob("*.log"))) <= 6, what="retention to trim the log")
    time.sleep(1)  # five more passes: retention reaches its fixed point (nothing is produced)
    low, high = watermarks(b, "sized")
    assert high == n
    assert 0 < low < n
    segments = sorted(seg_dir.glob("*.log"))
    assert len(segments) <= 6, segments
    assert int(segments[0].stem) == low
    # A consumer asking for offset 0 is reset (auto.offset.reset=earliest) to the log start.
    got = consume_from(b, "sized", 0, n - low)
    assert [m.offset() for m in got] == list(range(low, n))
    # offsets_for_times on retained data finds the exact record.
    c = consumer(b)
    try:
        target = low + (n - low) // 2
        tp = c.offsets_for_times([TopicPartition("sized", 0, base_ts + target)], timeout=10)[0]
        assert tp.error is None and tp.offset == target
        # A timestamp from the deleted range answers the log start.
        tp = c.offsets_for_times([TopicPartition("sized", 0, base_ts)], timeout=10)[0]
        assert tp.offset == low
    finally:
        c.close()
    # The log start survives a restart.
    b.stop()
    b.restart()
    assert watermarks(b, "sized") == (low, n)


@pytest.mark.spate_only("reads Spate's segment files in its data dir")
def test_time_retention_empties_a_log_of_old_records(broker_factory):
    b = broker_factory(settings=FAST_CHECKS)
    create(b, "aged", **{"retention.ms": "60000", "segment.bytes": "16384"})
    old = int(time.time() * 1000) - 3_600_000
    assert produce(b, "aged", [b"y" * 100] * 500, [old] * 500) == []
    assert wait_for(lambda: watermarks(b, "aged") == (500, 500), what="all old records deleted")
    # The log start moves first (readers start there at once), then the files are unlinked.
    only_active = [b.data_dir / "aged-0" / f"{500:020}.log"]
    assert wait_for(lambda: list((b.data_dir / "aged-0").glob("*.log")) == only_active,
                    timeout=5, what="the deleted segments' files unlinked")
    # Fresh records are kept and served.
    assert produce(b, "aged", [b"new"]) == []
    got = consume_from(b, "aged", 0, 1)
    assert [(m.offset(), m.value()) for m in got] == [(500, b"new")]


@pytest.mark.spate_only("reads Spate's segment files in its data dir")
def test_delete_records_moves_the_low_watermark_and_fetch_below_it_is_out_of_range(broker_factory):
    b = broker_factory()
    create(b, "trim", **{"segment.bytes": "16384"})
    assert produce(b, "trim", [b"z" * 100] * 1000) == []
    a = admin(b)
    fs = a.delete_records([TopicPartition("trim", 0, 600)])
    result = list(fs.values())[0].result(10)
    assert result.low_watermark == 600
    assert watermarks(b, "trim") == (600, 1000)
    with Conn(b.host, b.port) as conn:
        err, hw, _ = fetch_v4(conn, "trim", 0, offset=10)
        assert (err, hw) == (OFFSET_OUT_OF_RANGE, -1), "as Kafka: no high watermark with the error"
    # Whole segments below it are gone; the rest is served from 600.
    first_segment = min(int(p.stem) for p in (b.data_dir / "trim-0").glob("*.log"))
    assert 0 < first_segment <= 600
    got = consume_from(b, "trim", 600, 400)
    assert [m.offset() for m in got] == list(range(600, 1000))
    # Beyond the high watermark: OFFSET_OUT_OF_RANGE per partition.
    fs = a.delete_records([TopicPartition("trim", 0, 5000)])
    with pytest.raises(KafkaException):
        list(fs.values())[0].result(10)
    b.stop()
    b.restart()
    assert watermarks(b, "trim") == (600, 1000)


def test_log_append_time_stamps_records_with_the_broker_clock(broker_factory):
    b = broker_factory()
    create(b, "stamped", **{"message.timestamp.type": "LogAppendTime"})
    before = int(time.time() * 1000)
    assert produce(b, "stamped", [b"a", b"b"], [1000, 2000]) == []
    after = int(time.time() * 1000)
    got = consume_from(b, "stamped", 0, 2)
    assert len(got) == 2
    for m in got:
        kind, ts = m.timestamp()
        assert kind == 2, "TIMESTAMP_LOG_APPEND_TIME"
        assert before - 1000 <= ts <= after + 1000


def test_oversized_batch_gets_message_too_large_and_nothing_is_written(broker_factory):
    b = broker_factory()
    create(b, "small", **{"max.message.bytes": "2000"})
    p = Producer({"bootstrap.servers": b.bootstrap, "acks": "all", "message.max.bytes": 100000})
    errors = []
    p.produce("small", value=b"q" * 10000, partition=0, on_delivery=lambda e, m: errors.append(e))
    p.flush(30)
    assert len(errors) == 1 and errors[0] is not None
    assert "MSG_SIZE_TOO_LARGE" in errors[0].name() or errors[0].code() == 10, errors[0]
    assert watermarks(b, "small") == (0, 0)
    assert produce(b, "small", [b"fits"]) == []
    assert watermarks(b, "small") == (0, 1)


def alter(a, topic, entries, validate_only=False):
    res = ConfigResource("TOPIC", topic, incremental_configs=entries)
    fs = a.incremental_alter_configs([res], validate_only=validate_only)
    return list(fs.values())[0].result(10)


def described(a, topic):
    fs = a.describe_configs([ConfigResource("TOPIC", topic)])
    return list(fs.values())[0].result(10)


def test_incremental_alter_configs_changes_retention_of_a_live_topic(broker_factory):
    b = broker_factory(settings=FAST_CHECKS)
    create(b, "live", **{"segment.bytes": "16384"})
    assert produce(b, "live", [b"w" * 100] * 2000) == []
    a = admin(b)
    # validate_only changes nothing; a bad value is INVALID_CONFIG; an unknown topic fails.
    alter(a, "live", [ConfigEntry("retention.bytes", "65536", incremental_operation=AlterConfigOpType.SET)],
          validate_only=True)
    assert described(a, "live")["retention.bytes"].value == "-1"
    with pytest.raises(KafkaException) as bad:
        alter(a, "live", [ConfigEntry("retention.ms", "soon", incremental_operation=AlterConfigOpType.SET)])
    assert bad.value.args[0].code() == 40, bad.value
    with pytest.raises(KafkaException):
        alter(a, "nope", [ConfigEntry("retention.ms", "1", incremental_operation=AlterConfigOpType.SET)])
    assert watermarks(b, "live") == (0, 2000)
    # SET takes effect on the running partition: retention trims it.
    alter(a, "live", [
        ConfigEntry("retention.bytes", "65536", incremental_operation=AlterConfigOpType.SET),
        ConfigEntry("cleanup.policy", "compact", incremental_operation=AlterConfigOpType.APPEND),
    ])
    d = described(a, "live")
    assert d["retention.bytes"].value == "65536" and not d["retention.bytes"].is_default
    assert d["cleanup.policy"].value == "delete,compact"
    low, high = wait_for(
        lambda: (lambda w: w if w[0] > 0 else None)(watermarks(b, "live")),
        what="retention after the config change",
    )
    assert high == 2000 and low > 0
    # DELETE returns to the default; the change survives a restart.
    alter(a, "live", [ConfigEntry("cleanup.policy", None, incremental_operation=AlterConfigOpType.DELETE)])
    b.stop()
    b.restart()
    a = admin(b)
    d = described(a, "live")
    assert d["cleanup.policy"].is_default and d["retention.bytes"].value == "65536"


@pytest.mark.parametrize("compression", ["none", "gzip"])
def test_compacted_topic_refuses_records_without_a_key(broker_factory, compression):
    """As Kafka: INVALID_RECORD for a batch holding a record without a key, nothing written."""
    b = broker_factory()
    create(b, "compacted-keys", **{"cleanup.policy": "compact,delete"})
    create(b, "deleted-keys")
    p = Producer({
        "bootstrap.servers": b.bootstrap, "acks": "all", "linger.ms": 0,
        "compression.type": compression,
    })
    outcomes = {}

    def delivered(err, msg):
        outcomes[(msg.topic(), msg.value())] = err

    for topic in ("compacted-keys", "deleted-keys"):
        p.produce(topic, key=b"k", value=b"keyed", partition=0, on_delivery=delivered)
        assert p.flush(30) == 0
        p.produce(topic, value=b"keyless", partition=0, on_delivery=delivered)
        assert p.flush(30) == 0
    assert outcomes[("compacted-keys", b"keyed")] is None
    refused = outcomes[("compacted-keys", b"keyless")]
    assert refused is not None and refused.code() == KafkaError.INVALID_RECORD, refused
    assert watermarks(b, "compacted-keys") == (0, 1), "the refused batch was not written"
    assert outcomes[("deleted-keys", b"keyed")] is None
    assert outcomes[("deleted-keys", b"keyless")] is None, "a delete topic takes keyless records"
    assert watermarks(b, "deleted-keys") == (0, 2)


def test_timestamps_outside_the_topic_bounds_are_refused(broker_factory):
    """message.timestamp.after.max.ms (default one hour) and .before.max.ms, as Kafka 4:
    INVALID_TIMESTAMP and nothing written; LogAppendTime topics are not checked."""
    b = broker_factory()
    create(b, "ts-default")
    create(b, "ts-bounded", **{
        "message.timestamp.after.max.ms": "9223372036854775807",
        "message.timestamp.before.max.ms": "86400000",
    })
    create(b, "ts-append", **{"message.timestamp.type": "LogAppendTime"})
    now, hour = int(time.time() * 1000), 3_600_000
    cases = [
        ("ts-default", now + 2 * hour, KafkaError.INVALID_TIMESTAMP),
        ("ts-default", now + hour // 6, None),
        ("ts-default", now - 30 * 24 * hour, None),
        ("ts-bounded", now + 2 * hour, None),
        ("ts-bounded", now - 48 * hour, KafkaError.INVALID_TIMESTAMP),
        ("ts-append", now + 2 * hour, None),
    ]
    p = Producer({"bootstrap.servers": b.bootstrap, "acks": "all", "linger.ms": 0})
    outcomes = {}

    def delivered(err, msg):
        outcomes[int(msg.value())] = err

    for i, (topic, ts, _) in enumerate(cases):
        p.produce(topic, key=b"k", value=b"%d" % i, partition=0, timestamp=ts, on_delivery=delivered)
        assert p.flush(30) == 0
    for i, (topic, ts, expected) in enumerate(cases):
        got = outcomes[i]
        if expected is None:
            assert got is None, f"{topic} at {ts - now:+} ms: {got}"
        else:
            assert got is not None and got.code() == expected, f"{topic} at {ts - now:+} ms: {got}"
    assert watermarks(b, "ts-default") == (0, 2), "the refused batch was not written"
    assert watermarks(b, "ts-bounded") == (0, 1)
    assert watermarks(b, "ts-append") == (0, 1)


# gzip: compaction decompresses, keeps the survivors and recompresses them (kafka-python, which
# reads the result below, decodes gzip without extra packages).
@pytest.mark.parametrize("compression", ["none", "gzip"])
@pytest.mark.spate_only("reads Spate's segment files in its data dir")
def test_compacted_topic_keeps_the_latest_value_per_key_and_drops_tombstones(broker_factory, compression):
    b = broker_factory(settings=FAST_CHECKS)
    create(b, "compacted", **{
        "cleanup.policy": "compact",
        "segment.bytes": "16384",
        "delete.retention.ms": "1000",
    })
    p = Producer({
        "bootstrap.servers": b.bootstrap, "acks": "all", "linger.ms": 5, "batch.size": 4096,
        "compression.type": compression,
    })
    offsets = {}

    def delivered(err, msg):
        assert err is None, err
        offsets[(msg.key(), msg.value())] = msg.offset()

    for rnd in range(100):
        for k in range(10):
            p.produce("compacted", key=b"k%d" % k, value=b"v%d-%s" % (rnd, b"." * 60), partition=0,
                      on_delivery=delivered)
        p.poll(0)
    for k in range(5):  # tombstones for k0..k4
        p.produce("compacted", key=b"k%d" % k, value=None, partition=0, on_delivery=delivered)
    # Enough later (incompressible) records that all of the above sits in closed segments.
    for i in range(400):
        p.produce("compacted", key=b"filler", value=os.urandom(60), partition=0, on_delivery=delivered)
    assert p.flush(30) == 0
    high = watermarks(b, "compacted")[1]
    assert high == 1405

    def compacted():
        keyed = [m for m in read_from_start(b, "compacted", high) if m.key() != b"filler"]
        return keyed if len(keyed) == 5 else None

    keyed = wait_for(compacted, timeout=30, what="compaction to keep one record per live key")
    by_key = {m.key(): m for m in keyed}
    assert sorted(by_key) == [b"k5", b"k6", b"k7", b"k8", b"k9"]
    for k in range(5, 10):
        m = by_key[b"k%d" % k]
        want = b"v99-%s" % (b"." * 60)
        assert m.value() == want
        assert m.offset() == offsets[(b"k%d" % k, want)], "offsets never change"
    assert watermarks(b, "compacted") == (0, 1405)
    # kafka-python steps over the emptied batches too and sees the same survivors.
    kc = KafkaConsumer(bootstrap_servers=b.bootstrap, enable_auto_commit=False, consumer_timeout_ms=5000)
    try:
        ktp = KafkaTopicPartition("compacted", 0)
        kc.assign([ktp])
        kc.seek(ktp, 0)
        survivors = {(m.offset, m.key, m.value) for m in kc if m.key != b"filler"}
    finally:
        kc.close()
    assert survivors == {(m.offset(), m.key(), m.value()) for m in keyed}
    segments = sorted((b.data_dir / "compacted-0").glob("*.log"))
    assert sum(s.stat().st_size for s in segments) < 100_000
    # Produce keeps working and the result survives a restart.
    assert produce(b, "compacted", [b"again"]) == []
    b.stop()
    b.restart()
    assert watermarks(b, "compacted") == (0, 1406)
    seen = consume_from(b, "compacted", 0, 1)
    assert seen and seen[0].offset() > 0, "the head of the log was compacted away"


MAX_TIMESTAMP = -3



def test_tombstones_stay_delete_retention_ms_after_compaction_and_keep_their_timestamps(broker_factory):
    """Kafka's delete horizon (KIP-534): the compaction pass that first keeps a tombstone
    stamps its batch, and the tombstone stays delete.retention.ms after that pass even when
    its own timestamp is older; every record keeps its timestamp. librdkafka and kafka-python
    read the stamped batches."""
    from confluent_kafka import TIMESTAMP_CREATE_TIME

    b = broker_factory(settings=FAST_CHECKS)
    create(b, "horizon", **{
        "cleanup.policy": "compact",
        "segment.bytes": "16384",
        "delete.retention.ms": "3600000",
    })
    day_ago = int(time.time() * 1000) - 86_400_000
    p = Producer({"bootstrap.servers": b.bootstrap, "acks": "all", "linger.ms": 5, "batch.size": 4096})
    for rnd in range(20):
        for k in range(10):
            p.produce("horizon", key=b"k%d" % k, value=b"v%d-%s" % (rnd, b"." * 60), partition=0,
                      timestamp=day_ago + rnd)
        p.poll(0)
    for k in range(5):  # day-old tombstones for k0..k4: an hour's retention does not end them
        p.produce("horizon", key=b"k%d" % k, value=None, partition=0, timestamp=day_ago + 100)
    for _ in range(400):  # later records, so all of the above sits in closed segments
        p.produce("horizon", key=b"filler", value=os.urandom(60), partition=0, timestamp=day_ago + 200)
        p.poll(0)
    assert p.flush(30) == 0
    high = watermarks(b, "horizon")[1]
    assert high == 605

    def compacted():
        keyed = [m for m in read_from_start(b, "horizon", high) if m.key() != b"filler"]
        one_per_key = sorted(m.key() for m in keyed) == [b"k%d" % k for k in range(10)]
        return keyed if one_per_key else None

    keyed = wait_for(compacted, timeout=30, what="compaction to keep one record per key")
    by_key = {m.key(): m for m in keyed}
    assert sorted(by_key) == [b"k%d" % k for k in range(10)]
    for k in range(5):
        m = by_key[b"k%d" % k]
        assert m.value() is None, "the tombstone stays until its horizon"
        assert m.timestamp() == (TIMESTAMP_CREATE_TIME, day_ago + 100)
    for k in range(5, 10):
        m = by_key[b"k%d" % k]
        assert m.value() == b"v19-%s" % (b"." * 60)
        assert m.timestamp() == (TIMESTAMP_CREATE_TIME, day_ago + 19)
    kc = KafkaConsumer(bootstrap_servers=b.bootstrap, enable_auto_commit=False, consumer_timeout_ms=5000)
    try:
        ktp = KafkaTopicPartition("horizon", 0)
        kc.assign([ktp])
        kc.seek(ktp, 0)
        survivors = {(m.offset, m.key, m.value, m.timestamp) for m in kc if m.key != b"filler"}
    finally:
        kc.close()
    assert survivors == {(m.offset(), m.key(), m.value(), m.timestamp()[1]) for m in keyed}


def batch_headers(data):
    """(base offset, attributes, record count) of each whole v2 batch in fetched records."""
    out, at = [], 0
    while at + 61 <= len(data):
        base, length = struct.unpack(">qi", data[at:at + 12])
        attributes, = struct.unpack(">h", data[at + 21:at + 23])
        count, = struct.unpack(">i", data[at + 57:at + 61])
        out.append((base, attributes, count))
        at += 12 + length
    return out


@pytest.mark.parametrize("codec", ["lz4", "zstd", "gzip", "snappy"])
def test_timestamp_lookups_find_exact_records_inside_compressed_batches(broker, codec):
    topic = f"times-{codec}"
    create(broker, topic)
    ts0 = int(time.time() * 1000) - 60_000
    # Out of order on purpose: offsets 7 and 15 share the largest timestamp.
    timestamps = [ts0 + 10 * i for i in range(20)]
    timestamps[7] = timestamps[15] = ts0 + 1000
    p = Producer(
        {"bootstrap.servers": broker.bootstrap, "compression.type": codec, "linger.ms": 1000, "acks": "all"}
    )
    p.list_topics(topic, timeout=10)  # the leader is known before the first record is queued
    for i, ts in enumerate(timestamps):
        p.produce(topic, value=b"value-%d " % i * 20, key=b"k%d" % i, partition=0, timestamp=ts)
    assert p.flush(30) == 0
    host, port = broker.bootstrap.split(":")
    with Conn(host, int(port)) as conn:
        err, hw, data = fetch_v4(conn, topic, 0)
        assert err == 0 and hw == 20
        # librdkafka may still send the first record alone (a loaded machine): what matters is
        # that offsets 6 and 7 are looked up inside one compressed batch of several records.
        holding = [(b, a, n) for b, a, n in batch_headers(data) if b <= 6 and 7 < b + n]
        assert holding, f"offsets 6 and 7 share a batch: {batch_headers(data)}"
        assert holding[0][1] & 0x07 != 0, "the producer compressed"
        # The record with the largest timestamp: the first of the two.
        assert list_offsets_v7(conn, topic, [0], MAX_TIMESTAMP) == {0: (0, ts0 + 1000, 7)}
        assert list_offsets_v7(conn, topic, [0], ts0 + 55) == {0: (0, ts0 + 60, 6)}
    c = consumer(broker)
    try:
        for target, offset in [(ts0, 0), (ts0 + 55, 6), (ts0 + 75, 7), (ts0 + 1000, 7), (ts0 + 1001, -1)]:
            tp = c.offsets_for_times([TopicPartition(topic, 0, target)], timeout=10)[0]
            assert tp.error is None and tp.offset == offset, (target, tp)
    finally:
        c.close()


def test_max_timestamp_of_an_empty_partition_is_no_offset(broker):
    create(broker, "times-empty")
    host, port = broker.bootstrap.split(":")
    with Conn(host, int(port)) as conn:
        assert list_offsets_v7(conn, "times-empty", [0], MAX_TIMESTAMP) == {0: (0, -1, -1)}

