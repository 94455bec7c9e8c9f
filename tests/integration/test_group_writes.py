"""Group writes that fail for real: a group change is applied only once its
`__consumer_offsets` record is acknowledged by the in-sync replicas; a failed write is answered
with Kafka's error (COORDINATOR_NOT_AVAILABLE for a timed-out or under-replicated write) and
the group stays as it was (a failed SyncGroup write sends the group back to rebalancing, as
Kafka does).

The fault: a 3-broker cluster (and a dedicated controller) where `__consumer_offsets` has one
partition with 3 replicas and `min.insync.replicas=2`; both followers of that partition are
stopped (SIGSTOP), so an acks=all group write waits `offsets.commit.timeout.ms` or is refused
once the ISR shrinks to the leader alone.
"""

from __future__ import annotations

import threading
import time

import kafka_wire as w
from cluster_faults import cluster_factory, wait_for  # noqa: F401  (cluster_factory is a fixture)

import pytest

pytestmark = pytest.mark.spate_only("Spate's multi-node clusters (the wrapper runs one Kafka node)")

OFFSETS = "__consumer_offsets"
GROUP = "writes"
TOPIC = "gw"
COMMIT_TIMEOUT_MS = 3000
SETTINGS = {
    "offsets.topic.num.partitions": 1,
    "min.insync.replicas": 2,
    "offsets.commit.timeout.ms": COMMIT_TIMEOUT_MS,
    "replica.lag.time.max.ms": 3000,
    "broker.session.timeout.ms": 60000,  # paused brokers are not fenced: the ISR shrinks instead
    "group.initial.rebalance.delay.ms": 0,
}
SESSION_MS = 60000
COORDINATOR_NOT_AVAILABLE = 15
REBALANCE_IN_PROGRESS = 27
DESCRIBE_GROUPS = 15


def describe_group(conn: w.Conn, group: str):
    """DescribeGroups v0: (error, state, [(member_id, assignment)])."""
    r = conn.request(DESCRIBE_GROUPS, 0, w.array([w.string(group)]))
    (err, _, state, _, _, members), = r.array(lambda x: (
        x.i16(), x.string(), x.string(), x.string(), x.string(),
        x.array(lambda m: (m.string(), m.string(), m.string(), m.bytes_(), m.bytes_()))))
    return err, state, sorted((m[0], m[4]) for m in members or [])


def join(conn: w.Conn, client: str, member_id: str = "") -> w.JoinResult:
    """JoinGroup v5, through MEMBER_ID_REQUIRED for a new member."""
    kw = dict(session_timeout_ms=SESSION_MS, rebalance_timeout_ms=30000,
              protocols=[("range", w.consumer_protocol_metadata([TOPIC]))])
    j = w.join_group_v5(conn, GROUP, member_id, **kw)
    if j.error == 79:  # MEMBER_ID_REQUIRED
        j = w.join_group_v5(conn, GROUP, j.member_id, **kw)
    return j


def in_thread(fn, *args):
    """Runs fn(*args) in a thread; returns a function that waits for and returns its result."""
    out = {}
    t = threading.Thread(target=lambda: out.setdefault("r", fn(*args)), daemon=True)
    t.start()
    return lambda: (t.join(60), out["r"])[1]


def rebalance(conns, ids, assign):
    """Every member (re)joins at once, then syncs, the leader with `assign(member ids)`.
    Returns ([JoinResult], [(sync error, assignment)])."""
    # New members get their id first (MEMBER_ID_REQUIRED): the join phase then waits for them.
    ids = [m or w.join_group_v5(c, GROUP, "", session_timeout_ms=SESSION_MS).member_id for c, m in zip(conns, ids)]
    waits = [in_thread(join, c, f"m{i}", m) for i, (c, m) in enumerate(zip(conns, ids))]
    joined = [wait() for wait in waits]
    assert all(j.error == 0 for j in joined), joined
    leader = next(j for j in joined if j.member_id == j.leader)
    assignments = assign([m[0] for m in leader.members])
    waits = [in_thread(w.sync_group_v3, c, GROUP, j.generation, j.member_id,
                       assignments if j is leader else ()) for c, j in zip(conns, joined)]
    return joined, [wait() for wait in waits]


def test_failed_group_writes_answer_an_error_and_leave_the_group_as_it_was(cluster_factory):
    import helpers
    from confluent_kafka import Consumer, TopicPartition

    cluster = cluster_factory(SETTINGS, dedicated_controller=True)
    helpers.create_topic(cluster.up()[0].bootstrap, TOPIC, 1, replication_factor=3)
    node = cluster.up()[0]
    with w.Conn(node.host, node.port, timeout=30) as c:
        wait_for("the group coordinator", lambda: w.find_coordinator_v1(c, GROUP)[0] == 0, timeout=30)
    m = cluster.wait_full_isr(OFFSETS, 1)[0]
    coordinator = cluster.node(m.leader)
    followers = [r for r in m.replicas if r != m.leader]
    conn = lambda: w.Conn(coordinator.host, coordinator.port, timeout=COMMIT_TIMEOUT_MS / 1000 + 30)  # noqa: E731

    with conn() as a, conn() as b, conn() as admin:
        # A stable group of one with a committed offset, all durable.
        (ja,), ((err, asg),) = rebalance([a], [""], lambda ids: [(i, b"A1") for i in ids])
        assert (err, asg) == (0, b"A1")
        assert w.offset_commit_v7(a, GROUP, {TOPIC: {0: 5}}, ja.generation, ja.member_id) == {(TOPIC, 0): 0}
        before = describe_group(admin, GROUP)
        assert before == (0, "Stable", [(ja.member_id, b"A1")]), before

        for f in followers:
            cluster.pause(f)
        try:
            # LeaveGroup: the empty generation cannot be written; the member stays.
            started = time.monotonic()
            top, members = w.leave_group_v3(a, GROUP, [ja.member_id])
            assert top == COORDINATOR_NOT_AVAILABLE, (top, members)
            assert members == [(ja.member_id, COORDINATOR_NOT_AVAILABLE)], members
            assert time.monotonic() - started < COMMIT_TIMEOUT_MS / 1000 + 10
            assert describe_group(admin, GROUP) == before
            assert w.heartbeat_v3(a, GROUP, ja.generation, ja.member_id) == 0, "still a member"

            # OffsetCommit: not applied.
            assert w.offset_commit_v7(a, GROUP, {TOPIC: {0: 9}}, ja.generation, ja.member_id) == {
                (TOPIC, 0): COORDINATOR_NOT_AVAILABLE}
            assert w.offset_fetch_v5(admin, GROUP, {TOPIC: [0]})[1] == {(TOPIC, 0): (5, 0)}

            # A second member joins: the join phase writes nothing and completes; the leader's
            # SyncGroup cannot be written, so neither member gets an assignment and the group
            # goes back to rebalancing (Kafka's behaviour).
            joined, synced = rebalance([a, b], [ja.member_id, ""],
                                       lambda ids: [(i, f"A2-{n}".encode()) for n, i in enumerate(ids)])
            assert {j.generation for j in joined} == {ja.generation + 1}
            by_role = {j.member_id == j.leader: answer for j, answer in zip(joined, synced)}
            assert by_role[True] == (COORDINATOR_NOT_AVAILABLE, b""), synced
            # The follower's SyncGroup got the same error while it waited, or, sent after the
            # failure, finds the group rebalancing again.
            assert by_role[False] in [(COORDINATOR_NOT_AVAILABLE, b""), (REBALANCE_IN_PROGRESS, b"")], synced
            err, state, members = describe_group(admin, GROUP)
            assert (err, state) == (0, "PreparingRebalance"), (err, state)
            assert sorted(i for i, _ in members) == sorted(j.member_id for j in joined)
            assert all(asg == b"" for _, asg in members), "no assignment of the failed write is shown"
        finally:
            for f in followers:
                cluster.resume(f)
        cluster.wait_full_isr(OFFSETS, 1, timeout=60)

        # The fault cleared: the same members form the group, and nothing committed is lost.
        ids = [j.member_id for j in joined]
        joined, synced = rebalance([a, b], ids, lambda ids: [(i, f"A3-{n}".encode()) for n, i in enumerate(ids)])
        assert [e for e, _ in synced] == [0, 0], synced
        err, state, members = describe_group(admin, GROUP)
        assert (err, state) == (0, "Stable") and len(members) == 2, (err, state, members)
        assert all(asg.startswith(b"A3-") for _, asg in members), members
        assert w.offset_fetch_v5(admin, GROUP, {TOPIC: [0]})[1] == {(TOPIC, 0): (5, 0)}
        assert w.leave_group_v3(a, GROUP, [joined[0].member_id])[0] == 0
        assert w.leave_group_v3(b, GROUP, [joined[1].member_id])[0] == 0
        assert describe_group(admin, GROUP)[1] == "Empty"

    # A real client joins the group the failed writes left behind and resumes at the commit.
    consumer = Consumer({"bootstrap.servers": cluster.bootstrap(), "group.id": GROUP,
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    try:
        assert consumer.committed([TopicPartition(TOPIC, 0)], timeout=30)[0].offset == 5
        consumer.subscribe([TOPIC])
        deadline = time.monotonic() + 60
        while not consumer.assignment() and time.monotonic() < deadline:
            consumer.poll(0.2)
        assert consumer.assignment() == [TopicPartition(TOPIC, 0)]
        consumer.commit(offsets=[TopicPartition(TOPIC, 0, 7)], asynchronous=False)
        assert consumer.committed([TopicPartition(TOPIC, 0)], timeout=30)[0].offset == 7
        with w.Conn(coordinator.host, coordinator.port, timeout=30) as admin:
            err, state, members = describe_group(admin, GROUP)
            assert (err, state, len(members)) == (0, "Stable", 1), (err, state, members)
    finally:
        consumer.close()
