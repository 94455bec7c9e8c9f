"""README claims that had no test of their own (issue 22), each checked the way a client sees it:
Fetch `min_bytes`, Produce v0-2 refused, DeleteTopics by topic id, DescribeConfigs of a broker
(confluent-kafka's AdminClient and Kafka's `kafka-configs`), shutdown on SIGINT, a connection's
`queued.max.requests`, OffsetDelete through Kafka's `kafka-consumer-groups --delete-offsets`,
static membership with librdkafka members, and `segment.ms` rolling under a real producer.

Each asserts what breaks when the claim does: a broker that ignores min_bytes answers at once,
one that accepts Produce v2 appends, one without static membership rebalances the other member,
and so on. Timing bounds are lower bounds the claim implies (a wait that must happen) or
generous failure detectors, never performance claims.
"""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource

import kafka_wire as w
from conftest import REFERENCE
from helpers import create_topic, end_offsets, kafka_tool


def one_record(tag: str, value_bytes: int = 10) -> bytes:
    return w.record_batch([w.Rec(tag.encode(), b"v" * value_bytes)])


def wait_until(what, cond, timeout=30.0, every=0.1):
    deadline = time.monotonic() + timeout
    while True:
        got = cond()
        if got:
            return got
        assert time.monotonic() < deadline, f"not within {timeout}s: {what}"
        time.sleep(every)


# ---------------------------------------------------------------------------------------------
# Fetch min_bytes
# ---------------------------------------------------------------------------------------------
def cpu_seconds(broker) -> float:
    """User + system CPU time of the broker process so far."""
    fields = open(f"/proc/{broker.proc.pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_fetch_waits_for_min_bytes_or_max_wait(broker):
    create_topic(broker.bootstrap, "min-bytes", 1)
    with w.Conn(broker.host, broker.port, timeout=30) as conn:
        assert w.produce_v3(conn, "min-bytes", 0, one_record("a"))[0] == 0
        # Data is there but less than min_bytes: the answer waits for max_wait, then carries it.
        started = time.monotonic()
        err, hw, recs = w.fetch_v4(conn, "min-bytes", 0, offset=0, max_wait_ms=1500, min_bytes=100_000)
        waited = time.monotonic() - started
        assert (err, hw) == (0, 1) and len(w.decode_batches(recs)) == 1
        assert waited >= 1.3, f"answered after {waited:.2f}s with less than min_bytes: max_wait ignored"

    # A long poll past the end: a small batch does not reach min_bytes, a large one does.
    answer = {}
    with w.Conn(broker.host, broker.port, timeout=60) as poll, w.Conn(broker.host, broker.port) as prod:
        def long_poll():
            answer["got"] = w.fetch_v4(poll, "min-bytes", 0, offset=1, max_wait_ms=20_000, min_bytes=4000)
            answer["at"] = time.monotonic()

        t = threading.Thread(target=long_poll, daemon=True)
        t.start()
        time.sleep(0.3)  # the fetch is parked (nothing to read yet)
        assert w.produce_v3(prod, "min-bytes", 0, one_record("small"))[0] == 0
        cpu_before = cpu_seconds(broker)
        t.join(1.5)
        assert t.is_alive(), f"the fetch answered with less than min_bytes: {answer}"
        if not REFERENCE:  # (Kafka's JVM has busy threads of its own)
            spun = cpu_seconds(broker) - cpu_before
            assert spun < 0.5, f"the broker burnt {spun:.2f} s of CPU in 1.5 s while the fetch waited"
        sent = time.monotonic()
        assert w.produce_v3(prod, "min-bytes", 0, one_record("large", 6000))[0] == 0
        t.join(15)
        assert not t.is_alive(), "min_bytes reached but the fetch kept waiting"
        err, hw, recs = answer["got"]
        assert err == 0 and hw == 3
        assert [r[1] for b in w.decode_batches(recs) for r in b.records] == [b"small", b"large"]
        assert answer["at"] - sent < 10, "answered only at max_wait, not when min_bytes was reached"


# ---------------------------------------------------------------------------------------------
# Produce v0-2 refused (advertised, refused when sent, as Kafka 4 does)
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("version", [0, 1, 2])
def test_produce_v0_to_v2_is_refused_and_appends_nothing(broker, version):
    """Kafka 4.3.1 advertises Produce from v0 (librdkafka needs it) and closes the connection of
    a request below v3 (UnsupportedVersionException in its log): checked against it."""
    create_topic(broker.bootstrap, "old-produce", 1)
    with w.Conn(broker.host, broker.port) as conn:
        _, ranges = w.api_versions(conn)
        assert ranges[w.PRODUCE][0] == 0, f"Produce range advertised: {ranges[w.PRODUCE]}"
        body = w.i16(-1) + w.i32(30000) + w.array(
            [w.string("old-produce") + w.array([w.i32(0) + w.bytes_(one_record("old"))])])
        conn.send_request(w.PRODUCE, version, body)
        assert conn.expect_closed() == b"", "answered instead of closing"
    with w.Conn(broker.host, broker.port) as conn:
        assert w.list_offsets_v1(conn, "old-produce", [0])[0] == (0, 0), "the refused batch was appended"
        assert w.produce_v3(conn, "old-produce", 0, one_record("new")) == (0, 0)


# ---------------------------------------------------------------------------------------------
# DeleteTopics by topic id (v6)
# ---------------------------------------------------------------------------------------------
def topic_ids(conn, names):
    found, _ = w.describe_topic_partitions_v0(conn, names)
    return {t.name: t.topic_id for t in found if t.error == 0}


def test_delete_topics_by_topic_id(broker):
    for name in ("by-id", "kept"):
        create_topic(broker.bootstrap, name, 2)
    with w.Conn(broker.host, broker.port) as conn:
        ids = topic_ids(conn, ["by-id", "kept"])
        assert set(ids) == {"by-id", "kept"} and ids["by-id"] != ids["kept"]
        unknown = bytes(range(1, 17))
        answers = w.delete_topics_v6(conn, [(None, ids["by-id"]), (None, unknown)])
        by_id = {a[1]: a for a in answers}
        assert by_id[ids["by-id"]][2] == 0, answers
        assert by_id[ids["by-id"]][0] == "by-id", "the answer names the deleted topic"
        assert by_id[unknown][2] == w.UNKNOWN_TOPIC_ID, answers
        # (DescribeTopicPartitions, not Metadata v1: that would auto-create the topic again)
        wait_until("by-id gone", lambda: topic_ids(conn, ["by-id", "kept"]) == {"kept": ids["kept"]})
        # Deleted: the id is unknown now.
        again = w.delete_topics_v6(conn, [(None, ids["by-id"])])
        assert again[0][2] == w.UNKNOWN_TOPIC_ID, again


# ---------------------------------------------------------------------------------------------
# DescribeConfigs of a broker
# ---------------------------------------------------------------------------------------------
def test_describe_configs_of_the_broker(broker_factory):
    b = broker_factory(settings={"num.partitions": "5", "log.retention.ms": "7200000"})
    with w.Conn(b.host, b.port) as conn:
        node = w.metadata_v1(conn)[0][0][0]
    admin = AdminClient({"bootstrap.servers": b.bootstrap})
    resource = ConfigResource(ConfigResource.Type.BROKER, str(node))
    configs = admin.describe_configs([resource])[resource].result(30)
    assert configs["num.partitions"].value == "5"
    assert configs["log.retention.ms"].value == "7200000"
    # Kafka's own tool, through the Java client.
    out = kafka_tool("kafka.admin.ConfigCommand", "--bootstrap-server", b.bootstrap, "--describe",
                     "--entity-type", "brokers", "--entity-name", node, "--all").stdout
    assert "num.partitions=5" in out, out
    assert "log.retention.ms=7200000" in out, out


# ---------------------------------------------------------------------------------------------
# SIGINT
# ---------------------------------------------------------------------------------------------
def test_sigint_shuts_down_cleanly_with_every_acknowledged_record(broker):
    create_topic(broker.bootstrap, "interrupted", 2)
    p = Producer({"bootstrap.servers": broker.bootstrap, "acks": "1", "linger.ms": 5})
    acked = []
    for i in range(300):
        p.produce("interrupted", key=f"k{i}", value=f"v{i}",
                  on_delivery=lambda err, msg: acked.append(msg.offset()) if err is None else None)
    assert p.flush(60) == 0 and len(acked) == 300
    assert broker.stop(sig=signal.SIGINT) == 0, f"exit status after SIGINT\n{broker.log_tail()}"
    broker.start()
    assert sum(end_offsets(broker.bootstrap, "interrupted", 2).values()) == 300


# ---------------------------------------------------------------------------------------------
# queued.max.requests: a connection's requests read ahead of their replies
# ---------------------------------------------------------------------------------------------
def pipelined_fetches_then_produce(b, fetches):
    """`fetches` long polls (5 s) on an empty partition, then a produce, on one connection.
    Returns (seconds until the first fetch answered, what it carried)."""
    topic = "queued"
    create_topic(b.bootstrap, topic, 1)
    with w.Conn(b.host, b.port, timeout=30) as conn:
        started = time.monotonic()
        polls = [w.fetch_v4_send(conn, topic, 0, offset=0, max_wait_ms=5000) for _ in range(fetches)]
        prod = w.produce_v3_send(conn, topic, 0, one_record("behind"), acks=1)
        first = w.fetch_v4_recv(conn, polls[0])
        took = time.monotonic() - started
        for corr in polls[1:]:
            w.fetch_v4_recv(conn, corr)
        assert w.produce_v3_recv(conn, prod)[0] == 0
    return took, first


@pytest.mark.spate_only("Kafka reads one request of a connection at a time (its queued.max.requests "
                        "bounds the broker-wide request queue); Spate reads ahead per connection")
def test_queued_max_requests_bounds_the_requests_read_ahead_on_a_connection(broker_factory):
    # Read ahead: the produce behind two long polls is read at once and wakes them.
    took, (err, hw, recs) = pipelined_fetches_then_produce(broker_factory(), 2)
    assert err == 0 and hw == 1 and recs, "the produce behind the polls did not wake them"
    assert took < 4, f"the first poll waited {took:.1f}s although a record arrived"
    # queued.max.requests=2: the produce is not read until a poll has answered (empty, at max_wait).
    took, (err, hw, recs) = pipelined_fetches_then_produce(broker_factory({"queued.max.requests": "2"}), 2)
    assert err == 0 and hw == 0 and not recs, "the third request was read while two were held"
    assert took >= 4.5, f"the first poll answered after {took:.1f}s: the produce got through"


# ---------------------------------------------------------------------------------------------
# OffsetDelete through kafka-consumer-groups
# ---------------------------------------------------------------------------------------------
def committed(admin, group, topics_partitions):
    from confluent_kafka import ConsumerGroupTopicPartitions

    req = ConsumerGroupTopicPartitions(group, [TopicPartition(t, p) for t, p in topics_partitions])
    res = admin.list_consumer_group_offsets([req])[group].result(30)
    return {(tp.topic, tp.partition): tp.offset for tp in res.topic_partitions}


def test_offset_delete_removes_one_topics_offsets_of_an_inactive_group(broker):
    for t in ("od-a", "od-b"):
        create_topic(broker.bootstrap, t, 1)
    p = Producer({"bootstrap.servers": broker.bootstrap})
    for t in ("od-a", "od-b"):
        for i in range(5):
            p.produce(t, value=f"{t}-{i}")
    assert p.flush(30) == 0
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "od", "auto.offset.reset": "earliest",
                  "enable.auto.commit": False})
    c.assign([TopicPartition("od-a", 0), TopicPartition("od-b", 0)])
    deadline = time.monotonic() + 60
    while True:  # Kafka answers NOT_COORDINATOR while it creates __consumer_offsets: retriable
        try:
            c.commit(offsets=[TopicPartition("od-a", 0, 3), TopicPartition("od-b", 0, 4)], asynchronous=False)
            break
        except KafkaException as e:
            err = e.args[0]
            coordinator_moving = err.code() in (KafkaError.NOT_COORDINATOR, KafkaError.COORDINATOR_NOT_AVAILABLE,
                                                KafkaError.COORDINATOR_LOAD_IN_PROGRESS)
            assert (coordinator_moving or err.retriable()) and time.monotonic() < deadline, e
            time.sleep(0.2)
    c.close()
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    both = [("od-a", 0), ("od-b", 0)]
    assert committed(admin, "od", both) == {("od-a", 0): 3, ("od-b", 0): 4}
    out = kafka_tool("org.apache.kafka.tools.consumer.group.ConsumerGroupCommand", "--bootstrap-server",
                     broker.bootstrap, "--delete-offsets", "--group", "od", "--topic", "od-a").stdout
    assert "od-a" in out and "Successful" in out, out
    assert committed(admin, "od", both) == {("od-a", 0): -1001, ("od-b", 0): 4}


# ---------------------------------------------------------------------------------------------
# Static membership (group.instance.id) with librdkafka members
# ---------------------------------------------------------------------------------------------
class StaticMember:
    """A confluent-kafka consumer with a group.instance.id, polled in its own thread; records
    its assign/revoke events."""

    def __init__(self, bootstrap, group, topic, instance):
        self.events: list[tuple[str, list[int]]] = []
        self.assigned: set[int] = set()
        self.c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "group.instance.id": instance,
                           "session.timeout.ms": 30000, "heartbeat.interval.ms": 500,
                           "auto.offset.reset": "earliest", "partition.assignment.strategy": "range"})
        self.c.subscribe([topic], on_assign=self._on_assign, on_revoke=self._on_revoke)
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _on_assign(self, _c, parts):
        self.assigned = {p.partition for p in parts}
        self.events.append(("assign", sorted(self.assigned)))

    def _on_revoke(self, _c, parts):
        self.events.append(("revoke", sorted(p.partition for p in parts)))
        self.assigned = set()

    def _run(self):
        while not self._stop.is_set():
            self.c.poll(0.2)

    def close(self):
        """Stops polling and closes: a static member sends no LeaveGroup (its id stays)."""
        self._stop.set()
        self._t.join(10)
        self.c.close()


def test_a_static_member_that_restarts_within_its_session_keeps_its_partitions_without_a_rebalance(
        broker_factory):
    b = broker_factory(settings={"group.initial.rebalance.delay.ms": "0"})
    create_topic(b.bootstrap, "static", 4)
    a = StaticMember(b.bootstrap, "statics", "static", "member-a")
    other = StaticMember(b.bootstrap, "statics", "static", "member-b")
    try:
        wait_until("both static members assigned, 2 partitions each",
                   lambda: len(a.assigned) == 2 and len(other.assigned) == 2
                   and a.assigned | other.assigned == {0, 1, 2, 3}, timeout=60)
        kept, seen = set(a.assigned), len(other.events)
        a.close()
        a = StaticMember(b.bootstrap, "statics", "static", "member-a")
        wait_until("the restarted static member assigned", lambda: a.assigned, timeout=60)
        assert a.assigned == kept, f"restarted with {a.assigned}, had {kept}"
        time.sleep(2)  # heartbeats of the other member in the meantime would report a rebalance
        assert other.events[seen:] == [], f"the other member rebalanced: {other.events[seen:]}"
    finally:
        a.close()
        other.close()


# ---------------------------------------------------------------------------------------------
# segment.ms under a real producer
# ---------------------------------------------------------------------------------------------
@pytest.mark.spate_only("counts segment files in Spate's data dir")
def test_segment_ms_rolls_the_active_segment_of_a_producers_partition(broker):
    create_topic(broker.bootstrap, "rolling", 1, config={"segment.ms": "1000"})
    p = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all"})
    part = next(broker.data_dir.rglob("rolling-0"))

    def segments():
        return sorted(part.glob("*.log"))

    for i in range(3):
        if i:
            time.sleep(1.2)  # segment.ms is the condition itself: the active segment must be older
        p.produce("rolling", key=f"k{i}", value=f"v{i}")
        assert p.flush(30) == 0
    wait_until("3 segments after 3 appends 1.2 s apart", lambda: len(segments()) >= 3, timeout=10)
    assert sum(end_offsets(broker.bootstrap, "rolling", 1).values()) == 3


# ---------------------------------------------------------------------------------------------
# Offset expiry (offsets.retention.minutes) with librdkafka groups
# ---------------------------------------------------------------------------------------------
def test_offsets_of_an_empty_group_expire_and_those_of_a_stable_group_stay(broker_factory):
    b = broker_factory(settings={"offsets.retention.minutes": "1",
                                 "offsets.retention.check.interval.ms": "500",
                                 "group.initial.rebalance.delay.ms": "0"})
    create_topic(b.bootstrap, "expiring", 1)
    p = Producer({"bootstrap.servers": b.bootstrap})
    for i in range(4):
        p.produce("expiring", value=f"v{i}")
    assert p.flush(30) == 0

    def member(group):
        c = Consumer({"bootstrap.servers": b.bootstrap, "group.id": group, "auto.offset.reset": "earliest",
                      "enable.auto.commit": False})
        c.subscribe(["expiring"])
        got = 0
        deadline = time.monotonic() + 60
        while got < 4:
            assert time.monotonic() < deadline, f"{group}: read {got}/4"
            msg = c.poll(0.5)
            if msg is not None and msg.error() is None:
                got += 1
        c.commit(asynchronous=False)
        return c

    member("left").close()  # empty from now on: its offsets expire a minute after the commit
    stays = member("stays")  # a stable group subscribed to the topic: never expire
    committed_at = time.monotonic()
    admin = AdminClient({"bootstrap.servers": b.bootstrap})
    tp = [("expiring", 0)]
    assert committed(admin, "left", tp) == {("expiring", 0): 4}
    try:
        def left_expired():
            stays.poll(0.2)  # keeps the member in its group
            return committed(admin, "left", tp) == {("expiring", 0): -1001}

        wait_until("the empty group's offsets expired", left_expired, timeout=150, every=1)
        waited = time.monotonic() - committed_at
        assert waited > 50, f"expired {waited:.0f}s after the commit, before offsets.retention.minutes=1"
        assert committed(admin, "stays", tp) == {("expiring", 0): 4}, "a stable group's offsets expired"
    finally:
        stays.close()


# ---------------------------------------------------------------------------------------------
# Producer-epoch fencing with librdkafka's epoch bump (KIP-360)
# ---------------------------------------------------------------------------------------------
def producers_in(bootstrap, topic):
    """[(producer id, epoch)] of the batches of partition 0, in log order."""
    host, port = bootstrap.rsplit(":", 1)
    with w.Conn(host, int(port)) as c:
        err, hw, data = w.fetch_v4(c, topic, 0, 0, max_bytes=16 << 20)
    assert err == 0
    return [(b.producer_id, b.producer_epoch) for b in w.decode_batches(data)]


def test_a_bumped_producer_epoch_fences_the_old_one(broker):
    """librdkafka's idempotent producer bumps its epoch (InitProducerId with its id and epoch)
    when messages time out in flight (the broker paused); its new-epoch batches start again at
    sequence 0 and are appended; a batch of the old epoch is then refused with
    INVALID_PRODUCER_EPOCH (47), as Kafka does."""
    create_topic(broker.bootstrap, "bumped", 1)
    p = Producer({"bootstrap.servers": broker.bootstrap, "enable.idempotence": True, "acks": "all",
                  "message.timeout.ms": 3000, "linger.ms": 0})
    for i in range(5):
        p.produce("bumped", key=b"k", value=b"before-%d" % i, partition=0)
    assert p.flush(30) == 0
    (pid, epoch), = set(producers_in(broker.bootstrap, "bumped"))
    broker.pause()
    try:
        timed_out = []
        p.produce("bumped", key=b"k", value=b"in-flight", partition=0,
                  on_delivery=lambda err, _m: timed_out.append(err))
        p.flush(10)
        assert timed_out and timed_out[0] is not None, "delivered while the broker was paused"
    finally:
        broker.resume()
    delivered = []
    for i in range(5):
        p.produce("bumped", key=b"k", value=b"after-%d" % i, partition=0,
                  on_delivery=lambda err, _m: delivered.append(err))
    assert p.flush(60) == 0 and delivered == [None] * 5, delivered
    seen = producers_in(broker.bootstrap, "bumped")
    assert seen[-1][0] == pid and seen[-1][1] > epoch, f"no epoch bump: {seen}"
    with w.Conn(broker.host, broker.port) as c:
        old = w.record_batch([w.Rec(b"k", b"old-epoch")], producer_id=pid, producer_epoch=epoch,
                             base_sequence=100)
        assert w.produce_v3(c, "bumped", 0, old)[0] == 47, "a batch of the fenced epoch was taken"
