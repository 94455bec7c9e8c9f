"""Follower replication (replication factor 3) on 3-node loopback clusters, driven by real clients.

Kafka's semantics: followers fetch from the leader (Fetch with their broker id), the leader
drops a follower from the ISR after `replica.lag.time.max.ms` without it catching up, acks=all
is answered once every ISR member has the batch (durable, in Spate), `min.insync.replicas`
refuses acks=all writes with NOT_ENOUGH_REPLICAS (19) when the ISR is too small, and when a
leader's broker is fenced (silent for `broker.session.timeout.ms`) the controller elects a new
leader from the ISR with a larger leader epoch; a returning old leader becomes a follower and
truncates what it wrote alone. Consumers that name a stale leader epoch get
FENCED_LEADER_EPOCH (74) (KIP-320), and since KIP-951 those answers (Produce v10+, Fetch v16+) name
the partition's current leader, its epoch and endpoint. Kafka 4's `kafka-topics --describe` reads
partitions with DescribeTopicPartitions (75), paginated by a cursor.

Timeouts are short (session 3 s, heartbeat 0.5 s, replica.lag.time.max.ms 3 s) so each fault
plays out in seconds. Every node a test starts is resumed and killed by the `cluster_factory`
fixture, whatever happens.
"""

from __future__ import annotations

import collections
import json
import re
import subprocess
import time

import pytest

import helpers
import kafka_wire as w
from netlab import netns_cluster  # noqa: F401  (a fixture)
from conftest import SPATE_BIN
from metrics_scrape import scrape
from cluster_faults import (  # noqa: F401  (cluster_factory is a fixture)
    SESSION_TIMEOUT_MS,
    AckedProducer,
    GroupConsumer,
    JavaAckedProducer,
    check_acked,
    cluster_factory,
    key_of,
    read_all,
    value_of,
    wait_for,
)

pytestmark = pytest.mark.spate_only("Spate's multi-node clusters (the wrapper runs one Kafka node)")

LAG_MS = 3000
FETCH_WAIT_MS = 500
REPLICATION = {"replica.lag.time.max.ms": LAG_MS}
KEYS = 24
TOPICS_TOOL = "org.apache.kafka.tools.TopicCommand"


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------
def create_replicated(cluster, topic: str, partitions: int, min_insync: int = 2):
    """An RF=3 topic with `min.insync.replicas`, once every partition has all 3 replicas in sync."""
    helpers.create_topic(cluster.up()[0].bootstrap, topic, partitions, replication_factor=3,
                         config={"min.insync.replicas": min_insync})
    return cluster.wait_full_isr(topic, partitions)


def assert_all_acked(producer):
    """After stop(): no delivery error at all, every record sent acknowledged, nothing left."""
    assert not producer.fatal, f"fatal producer errors: {producer.fatal[:5]}"
    assert not producer.errors, f"{len(producer.errors)} delivery errors, first: {producer.errors[:5]}"
    assert producer.unflushed == 0, f"{producer.unflushed} records still unanswered after flush"
    assert len(producer.acked) == producer.sent, f"sent {producer.sent}, acknowledged {len(producer.acked)}"


def produce_acked(cluster, topic: str, count: int, first: int = 0, exclude=()) -> dict:
    """`count` records through an idempotent acks=all confluent-kafka producer (bootstrapping
    from the brokers up, less `exclude`); all must be acknowledged. Returns {i: (partition, offset)}."""
    with AckedProducer(cluster.bootstrap(exclude), topic, KEYS, interval_s=0, first=first, count=count) as producer:
        wait_for(f"{count} records produced and answered", lambda: producer.done, timeout=120)
        producer.stop()
    assert_all_acked(producer)
    return producer.acked


def read_and_check(cluster, topic: str, partitions: int, acked: dict, exact: bool = True):
    """Reads the topic back through the brokers up and checks every acknowledged record is there
    exactly once, at its offset; with `exact`, nothing else is there either."""
    log, highs = read_all(cluster.bootstrap(), topic, partitions)
    check_acked(acked, log, highs, KEYS)
    if exact:
        assert sum(highs.values()) == len(acked), (
            f"{sum(highs.values())} records in the topic, {len(acked)} acknowledged (duplicates or strays?)")
    return log, highs


def lead_by(cluster, topic: str, partitions: int, partition: int, want: int, acked: dict, rounds: int = 3):
    """Kills -9 the partition's current leader (only it), waits for the election, checks every
    acknowledged record is readable from the new leader, restarts the victim and waits for it
    to be back in the ISR, until broker `want` leads. Returns the state once it does."""
    for _ in range(rounds):
        m = cluster.wait_full_isr(topic, partitions, timeout=40)[partition]
        if m.leader == want:
            return m
        victim = m.leader
        cluster.kill(victim)
        new = cluster.wait_new_leader(topic, partition, m)
        assert new.leader in m.isr, f"leader {new.leader} elected from outside the ISR {m.isr}"
        read_and_check(cluster, topic, partitions, acked)
        cluster.restart(victim)
    m = cluster.wait_full_isr(topic, partitions, timeout=40)[partition]
    assert m.leader == want, f"broker {want} not elected leader of {topic}/{partition} in {rounds} leader kills"
    return m


def raw_record(i: int) -> bytes:
    """A one-record batch (no producer id) in the same key/value scheme as the producers'."""
    return w.record_batch([w.Rec(key_of(i, KEYS).encode(), value_of(i).encode())])


# ---------------------------------------------------------------------------------------------
# 1. what an RF=3 topic looks like
# ---------------------------------------------------------------------------------------------
def test_rf3_partitions_show_three_replicas_all_in_sync_in_metadata_and_kafka_topics(cluster_factory):
    cluster = cluster_factory(REPLICATION)
    topic = "described"
    out = helpers.kafka_tool(TOPICS_TOOL, "--bootstrap-server", cluster.bootstrap(), "--create", "--topic", topic,
                             "--partitions", "6", "--replication-factor", "3",
                             "--config", "min.insync.replicas=2").stdout
    assert f"Created topic {topic}." in out
    parts = cluster.wait_full_isr(topic, 6)
    for p, m in parts.items():
        assert sorted(m.replicas) == [1, 2, 3] and sorted(m.isr) == [1, 2, 3], (p, m)
        assert m.offline == [] and m.leader_epoch >= 0, (p, m)
        # as Kafka: a new partition is led by its first (preferred) replica
        assert m.leader == m.replicas[0], f"partition {p}: leader {m.leader}, replicas {m.replicas}"
    assert collections.Counter(m.leader for m in parts.values()) == {1: 2, 2: 2, 3: 2}, parts
    assert len({tuple(m.replicas) for m in parts.values()}) >= 3, f"replica lists not spread: {parts}"

    described = helpers.kafka_tool(TOPICS_TOOL, "--bootstrap-server", cluster.bootstrap(), "--describe",
                                   "--topic", topic).stdout
    header = next(ln for ln in described.splitlines() if ln.startswith(f"Topic: {topic}"))
    assert "PartitionCount: 6" in header and "ReplicationFactor: 3" in header, header
    assert "min.insync.replicas=2" in header, header
    rows = {}
    for ln in described.splitlines():
        found = re.search(r"Partition: (\d+)\s+Leader: (-?\d+)\s+Replicas: ([\d,]+)\s+Isr: ([\d,]*)", ln)
        if found:
            p, leader, replicas, isr = found.groups()
            rows[int(p)] = (int(leader), [int(x) for x in replicas.split(",")],
                            sorted(int(x) for x in isr.split(",") if x))
    assert rows == {p: (m.leader, m.replicas, sorted(m.isr)) for p, m in parts.items()}, described

    # The replicas serve: acks=all through every leader, read back exactly.
    acked = produce_acked(cluster, topic, 600)
    assert {p for p, _ in acked.values()} == set(range(6))
    read_and_check(cluster, topic, 6, acked)


# ---------------------------------------------------------------------------------------------
# 2. acceptance: leaders kill -9'ed in turn under an idempotent acks=all producer
# ---------------------------------------------------------------------------------------------
LEADER_KILLS = 5


@pytest.mark.parametrize("client", ["confluent", "java"])
def test_idempotent_acks_all_producer_loses_and_duplicates_nothing_while_leaders_are_killed(
        cluster_factory, client):
    cluster = cluster_factory(REPLICATION)
    topic, partitions = f"accept-{client}", 3
    create_replicated(cluster, topic, partitions, min_insync=2)
    bootstrap = cluster.bootstrap()
    producer = (AckedProducer(bootstrap, topic, KEYS) if client == "confluent"
                else JavaAckedProducer(bootstrap, topic, KEYS))
    with producer, GroupConsumer(bootstrap, topic, f"accept-group-{client}") as group:
        producer.wait_acked(300, timeout=60)
        epochs = collections.defaultdict(list)
        for k in range(LEADER_KILLS):
            p = k % partitions
            before = cluster.state(topic, p)
            epochs[p].append(before.leader_epoch)
            victim = before.leader
            cluster.kill(victim)
            after = cluster.wait_new_leader(topic, p, before)
            assert after.leader in before.isr, f"{topic}/{p}: leader {after.leader} not from the ISR {before.isr}"
            # min.insync.replicas=2 and two brokers up: acks=all goes on
            producer.wait_acked(len(producer.acked) + 200, timeout=45)
            cluster.restart(victim)
            cluster.wait_full_isr(topic, partitions, timeout=45)
        producer.wait_acked(len(producer.acked) + 200, timeout=45)
        producer.stop()
        assert_all_acked(producer)
        log, highs = read_and_check(cluster, topic, partitions, producer.acked)
        # The group member consumed across every change and saw every acknowledged record, each
        # as it is in the final log (nothing it saw was later truncated).
        group.wait_seen(set(producer.acked.values()), timeout=60)
        group.stop()
    assert not group.conflicts, f"the group consumer got different records at one offset: {group.conflicts[:5]}"
    changed = {pos: (kv, log.get(pos)) for pos, kv in group.seen.items() if log.get(pos) != kv}
    assert not changed, f"the group consumer saw records that are not in the log: {list(changed.items())[:5]}"
    final = cluster.partitions(topic)
    for p, seen in epochs.items():
        assert final[p].leader_epoch > max(seen), f"{topic}/{p}: leader epochs {seen} then {final[p].leader_epoch}"
    assert len(producer.acked) >= 300 + (LEADER_KILLS + 1) * 200


# ---------------------------------------------------------------------------------------------
# 3. paused followers: ISR shrink and expansion, min.insync.replicas
# ---------------------------------------------------------------------------------------------
def cluster_info(cluster, exclude=()):
    """`spate cluster info --json` through the nodes not in `exclude`."""
    p = subprocess.run([str(SPATE_BIN), "cluster", "info", "--json", "--brokers",
                        cluster.bootstrap(exclude=exclude)],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


def test_paused_followers_leave_the_isr_and_rejoin_and_min_insync_refuses_acks_all(cluster_factory):
    # A session timeout far above the pauses: the ISR shrinks because the leader sees the
    # followers lag (replica.lag.time.max.ms), not because the controller fences them. A
    # dedicated controller keeps the quorum up while two brokers are stopped.
    cluster = cluster_factory({**REPLICATION, "broker.session.timeout.ms": 60000}, dedicated_controller=True)
    topic = "paused"
    m0 = create_replicated(cluster, topic, 1, min_insync=2)[0]
    leader = m0.leader
    f1, f2 = [r for r in m0.replicas if r != leader]

    with AckedProducer(cluster.bootstrap(), topic, KEYS) as producer:
        producer.wait_acked(200)
        cluster.pause(f1)
        paused_at = time.monotonic()
        shrunk = cluster.wait_isr(topic, 0, {leader, f2}, via=leader, timeout=LAG_MS / 1000 + 20)
        assert time.monotonic() - paused_at >= LAG_MS / 1000 / 2, "ISR shrank long before replica.lag.time.max.ms"
        assert (shrunk.leader, shrunk.leader_epoch) == (leader, m0.leader_epoch), shrunk
        producer.wait_acked(len(producer.acked) + 200, timeout=30)  # acks=all with 2 in sync
        # The operator's view: `spate cluster info` counts it under-replicated.
        info = cluster_info(cluster, exclude=(f1,))
        assert info["under_replicated_partitions"] >= 1 and info["offline_partitions"] == 0, info

        cluster.resume(f1)  # it catches up and comes back
        cluster.wait_isr(topic, 0, {leader, f1, f2}, via=leader, timeout=30)
        producer.wait_acked(len(producer.acked) + 200, timeout=30)
        producer.stop()
    assert_all_acked(producer)
    acked = dict(producer.acked)

    # Both followers stopped. As in Kafka, a follower that has every record stays in the ISR
    # however long it is silent (it is not behind), so the leader must get a record they lack:
    # an acks=all one, appended, waits for them until the ISR shrinks to the leader alone,
    # below min.insync.replicas=2: NOT_ENOUGH_REPLICAS_AFTER_APPEND (the record stays).
    cluster.pause(f1)
    cluster.pause(f2)
    after_append, refused, one_ack, nack, after = 10**6, 10**6 + 1, 10**6 + 2, 10**6 + 3, 10**6 + 4
    with cluster.conn(leader, timeout=LAG_MS / 1000 + 40) as c:
        err, base = w.produce_v3(c, topic, 0, raw_record(after_append), acks=-1, timeout_ms=30000)
        assert err == w.NOT_ENOUGH_REPLICAS_AFTER_APPEND, (
            f"acks=all while the ISR shrinks to the leader alone: error {err}, expected 20")
        acked[after_append] = (0, len(acked))  # appended, though not acknowledged
        cluster.wait_isr(topic, 0, {leader}, via=leader, timeout=LAG_MS / 1000 + 20)
        end = w.list_offsets_v1(c, topic, [0], -1)[0]
        assert end == (0, len(acked)), end
        err, _ = w.produce_v3(c, topic, 0, raw_record(refused), acks=-1, timeout_ms=5000)
        assert err == w.NOT_ENOUGH_REPLICAS, f"acks=all with ISR {{{leader}}}: error {err}, expected 19"
        assert w.list_offsets_v1(c, topic, [0], -1)[0] == end, "a refused acks=all batch was appended"
        err, base = w.produce_v3(c, topic, 0, raw_record(one_ack), acks=1)
        assert (err, base) == (0, len(acked)), f"acks=1 with one replica in sync: error {err}, base {base}"
    acked[one_ack] = (0, len(acked))

    # A real client's acks=all delivery fails with NOT_ENOUGH_REPLICAS (retries off).
    from confluent_kafka import Producer

    failed = []
    p = Producer({"bootstrap.servers": cluster.node(leader).bootstrap, "acks": "all", "retries": 0,
                  "enable.idempotence": False, "message.timeout.ms": 10000})
    p.produce(topic, key=key_of(nack, KEYS), value=value_of(nack), partition=0,
              on_delivery=lambda err, msg: failed.append(err and err.name()))
    assert p.flush(30) == 0
    assert failed == ["NOT_ENOUGH_REPLICAS"], failed

    cluster.resume(f1)
    cluster.resume(f2)
    cluster.wait_isr(topic, 0, {leader, f1, f2}, via=leader, timeout=30)
    with cluster.conn(leader) as c:
        err, base = w.produce_v3(c, topic, 0, raw_record(after), acks=-1)
    assert (err, base) == (0, len(acked)), f"acks=all with the ISR back: error {err}, base {base}"
    acked[after] = (0, base)
    log, _ = read_and_check(cluster, topic, 1, acked)
    assert value_of(refused) not in {v for _, v in log.values()}
    assert value_of(nack) not in {v for _, v in log.values()}


# ---------------------------------------------------------------------------------------------
# 4. a follower killed while records are written catches up
# ---------------------------------------------------------------------------------------------
def test_a_follower_killed_during_writes_catches_up_and_can_lead_with_everything(cluster_factory):
    cluster = cluster_factory(REPLICATION)
    topic = "catch-up"
    m0 = create_replicated(cluster, topic, 1)[0]
    follower = next(r for r in m0.replicas if r != m0.leader)

    with AckedProducer(cluster.bootstrap(), topic, KEYS) as producer:
        producer.wait_acked(300)
        cluster.kill(follower)
        shrunk = cluster.wait_isr(topic, 0, set(m0.replicas) - {follower}, via=m0.leader,
                                  timeout=LAG_MS / 1000 + 20)
        assert shrunk.leader == m0.leader
        producer.wait_acked(len(producer.acked) + 1500, timeout=45)  # written while it is down
        cluster.restart(follower)
        cluster.wait_full_isr(topic, 1, timeout=45)
        producer.wait_acked(len(producer.acked) + 200, timeout=30)
        producer.stop()
    assert_all_acked(producer)
    read_and_check(cluster, topic, 1, producer.acked)
    # Kill the leader (only it) until the restarted follower leads: it serves every record.
    m = lead_by(cluster, topic, 1, 0, follower, producer.acked)
    assert m.leader_epoch > m0.leader_epoch
    with cluster.conn(follower) as c:
        assert w.list_offsets_v1(c, topic, [0], -1)[0] == (0, len(producer.acked))
    read_and_check(cluster, topic, 1, producer.acked)


# ---------------------------------------------------------------------------------------------
# 5. a paused leader is replaced; back, it follows and drops what it wrote alone
# ---------------------------------------------------------------------------------------------
def test_a_paused_leader_is_replaced_and_what_it_wrote_alone_is_never_acknowledged_or_kept(cluster_factory):
    cluster = cluster_factory({**REPLICATION, "replica.fetch.wait.max.ms": FETCH_WAIT_MS})
    topic = "paused-leader"
    m0 = create_replicated(cluster, topic, 1)[0]
    old = m0.leader
    followers = [r for r in m0.replicas if r != old]
    acked = produce_acked(cluster, topic, 300)

    alone = [10**6 + j for j in range(5)]  # acks=1 records only the old leader gets
    orphan = 10**6 + 100  # an acks=all record sent to the old leader while it is stopped
    stale = cluster.conn(old, timeout=60)
    try:
        # The followers stop for a moment, well under replica.lag.time.max.ms (the ISR keeps
        # them); once their parked fetches are answered (replica.fetch.wait.max.ms) nothing
        # carries new records to them, so the acks=1 records stay on the leader alone. Then the
        # leader stops and the followers go on.
        for f in followers:
            cluster.pause(f)
        try:
            time.sleep(2 * FETCH_WAIT_MS / 1000)
            for j, i in enumerate(alone):
                assert w.produce_v3(stale, topic, 0, raw_record(i), acks=1) == (0, 300 + j)
            cluster.pause(old)
        finally:
            for f in followers:
                cluster.resume(f)
        corr = w.produce_v3_send(stale, topic, 0, raw_record(orphan), acks=-1, timeout_ms=10000)
        m1 = cluster.wait_new_leader(topic, 0, m0)
        assert m1.leader in followers and m1.leader_epoch > m0.leader_epoch, (m0, m1)
        assert old not in cluster.live_brokers(), "the stopped broker is still listed after its session timeout"
        acked.update(produce_acked(cluster, topic, 300, first=300))  # on the new leader, from offset 300
        assert sorted(o for i, (_, o) in acked.items() if i >= 300) == list(range(300, 600))
        cluster.resume(old)
        try:
            answer = w.produce_v3_recv(stale, corr)
        except (w.Closed, OSError) as e:  # closed or no answer: not acknowledged either
            answer = (None, repr(e))
    finally:
        stale.close()
    print(f"the paused leader answered the acks=all produce sent while it was stopped: {answer}")
    if answer[0] == 0:  # a success only if the record is where it says, on the new leader
        acked[orphan] = (0, answer[1])

    def check(log):
        values = {v for _, v in log.values()}
        kept = [value_of(i) for i in alone if value_of(i) in values]
        assert not kept, f"records the old leader wrote alone are still in the log: {kept}"
        if orphan not in acked:
            assert value_of(orphan) not in values, f"the unacknowledged ({answer}) acks=all record is in the log"

    # Back, it follows the new leader: it must drop its own tail (offsets 300-304 diverge from
    # the new leader's epoch) to rejoin the ISR.
    m2 = cluster.wait_full_isr(topic, 1, timeout=45)[0]
    assert m2.leader_epoch >= m1.leader_epoch and old in m2.isr, m2
    log, _ = read_and_check(cluster, topic, 1, acked)
    check(log)
    # Once it leads again it serves exactly the acknowledged records: its tail is gone.
    m3 = lead_by(cluster, topic, 1, 0, old, acked)
    assert m3.leader_epoch > m1.leader_epoch
    log, _ = read_and_check(cluster, topic, 1, acked)
    check(log)


# ---------------------------------------------------------------------------------------------
# 5b. the leader cut off from the other nodes by the network (it keeps running, clients reach it)
# ---------------------------------------------------------------------------------------------
NOT_ACKNOWLEDGED = {w.REQUEST_TIMED_OUT, w.NOT_ENOUGH_REPLICAS, w.NOT_ENOUGH_REPLICAS_AFTER_APPEND,
                    w.NOT_LEADER_OR_FOLLOWER}


def test_a_leader_cut_off_by_the_network_acknowledges_nothing_alone_and_truncates_when_it_returns(netns_cluster):
    # Each node in its own network namespace; the test (a client) reaches all three. The leader
    # loses its links to both other nodes but not to clients, and keeps running: it still takes
    # acks=1 writes (as Kafka's leader does until it learns it was replaced) but cannot answer
    # an acks=all write it cannot replicate; the others elect a new leader; healed, the old
    # leader drops what it wrote alone.
    cluster, lab = netns_cluster({**REPLICATION, "replica.fetch.wait.max.ms": FETCH_WAIT_MS})
    topic = "cut-leader"
    m0 = create_replicated(cluster, topic, 1)[0]
    old = m0.leader
    followers = [r for r in m0.replicas if r != old]
    acked = produce_acked(cluster, topic, 300)

    alone = [10**6 + j for j in range(5)]
    orphan = 10**6 + 100
    with cluster.conn(old, timeout=60) as stale:
        lab.isolate(old)
        for j, i in enumerate(alone):
            assert w.produce_v3(stale, topic, 0, raw_record(i), acks=1) == (0, 300 + j)
        corr = w.produce_v3_send(stale, topic, 0, raw_record(orphan), acks=-1, timeout_ms=8000)

        def elected():
            views = [cluster.state(topic, 0, via=f) for f in followers]
            m = views[0]
            agreed = all((v.leader, v.leader_epoch) == (m.leader, m.leader_epoch) for v in views)
            return agreed and m.leader in followers and m.leader_epoch > m0.leader_epoch and m

        m1 = wait_for(f"a follower of {followers} leads {topic}/0 after node {old} is cut off", elected,
                      timeout=SESSION_TIMEOUT_MS / 1000 + 20, seen=cluster.seen)
        assert old not in cluster.live_brokers(via=followers[0]), "the cut-off node is still listed as live"
        acked.update(produce_acked(cluster, topic, 300, first=300, exclude=(old,)))
        assert sorted(o for i, (_, o) in acked.items() if i >= 300) == list(range(300, 600))
        err, offset = w.produce_v3_recv(stale, corr)
        print(f"the cut-off leader answered the acks=all produce with error {err}")
        assert err in NOT_ACKNOWLEDGED, f"the cut-off leader acknowledged an acks=all write (error {err}, offset {offset})"
        # What the cut-off leader reports about itself is its own stale view; still a leader at
        # most in the old epoch.
        stale_view = cluster.state(topic, 0, via=old)
        assert stale_view.leader_epoch <= m1.leader_epoch, (stale_view, m1)
    lab.rejoin(old)

    def check(log):
        values = {v for _, v in log.values()}
        kept = [value_of(i) for i in alone + [orphan] if value_of(i) in values]
        assert not kept, f"records the cut-off leader wrote alone are in the log: {kept}"

    m2 = cluster.wait_full_isr(topic, 1, timeout=60)[0]
    assert m2.leader_epoch >= m1.leader_epoch and old in m2.isr, m2
    log, _ = read_and_check(cluster, topic, 1, acked)
    check(log)
    # Leading again, it serves exactly the acknowledged records: its own tail is gone.
    lead_by(cluster, topic, 1, 0, old, acked)
    log, _ = read_and_check(cluster, topic, 1, acked)
    check(log)


# ---------------------------------------------------------------------------------------------
# 6. stale leader epochs after a leader change (KIP-320)
# ---------------------------------------------------------------------------------------------
def test_stale_leader_epoch_is_fenced_and_offset_for_leader_epoch_answers_the_old_epoch_end(cluster_factory):
    cluster = cluster_factory(REPLICATION)
    topic = "epochs"
    m0 = create_replicated(cluster, topic, 1)[0]
    acked = produce_acked(cluster, topic, 200)
    cluster.kill(m0.leader)
    m1 = cluster.wait_new_leader(topic, 0, m0)
    acked.update(produce_acked(cluster, topic, 100, first=200))
    old_epoch, epoch = m0.leader_epoch, m1.leader_epoch

    with cluster.conn(m1.leader) as c:
        err, hw, _ = w.fetch_v11(c, topic, 0, 0, current_leader_epoch=old_epoch)
        assert err == w.FENCED_LEADER_EPOCH, f"Fetch with leader epoch {old_epoch} (current {epoch}): error {err}"
        err, hw, data = w.fetch_v11(c, topic, 0, 0, current_leader_epoch=epoch)
        assert err == 0 and hw == 300, (err, hw)
        assert w.decode_batches(data)[0].base_offset == 0
        err, _, _ = w.fetch_v11(c, topic, 0, 0, current_leader_epoch=epoch + 1)
        assert err == w.UNKNOWN_LEADER_EPOCH, f"Fetch with a future leader epoch: error {err}"
        listed = w.list_offsets_v7(c, topic, [0], -1, current_leader_epoch=old_epoch)
        assert listed[0][0] == w.FENCED_LEADER_EPOCH, listed
        err, _, end = w.list_offsets_v7(c, topic, [0], -1, current_leader_epoch=epoch)[0]
        assert (err, end) == (0, 300)
        # The old epoch ended where the new leader's first record went: offset 200.
        assert w.offset_for_leader_epoch_v3(c, topic, 0, old_epoch, current_leader_epoch=epoch) == (0, old_epoch, 200)
        assert w.offset_for_leader_epoch_v3(c, topic, 0, epoch, current_leader_epoch=epoch) == (0, epoch, 300)
        err, _, _ = w.offset_for_leader_epoch_v3(c, topic, 0, old_epoch, current_leader_epoch=old_epoch)
        assert err == w.FENCED_LEADER_EPOCH, f"OffsetForLeaderEpoch with a stale current epoch: error {err}"
    read_and_check(cluster, topic, 1, acked)
    assert {o for _, o in acked.values()} == set(range(300))


# ---------------------------------------------------------------------------------------------
# 7. leaders killed right at their first write in a new epoch come back as followers
# ---------------------------------------------------------------------------------------------
KILL_DELAYS_S = [0.0, 0.001, 0.003, 0.01, 0.05]


def test_leaders_killed_at_their_first_write_in_a_new_epoch_rejoin_the_isr(cluster_factory):
    # A leader stamps its epoch in its epoch cache (at offset N, its log end) before its first
    # append in that epoch. Killed -9 just then, its followers stopped so they fetch nothing,
    # it comes back with or without that record and with or without the stamp, while the next
    # leader's epoch starts at N. As a follower it must truncate to N (dropping what it wrote
    # alone and its epoch) and catch up: back in the ISR, the record gone. Each round kills
    # the leader a little later after the write.
    cluster = cluster_factory({**REPLICATION, "replica.fetch.wait.max.ms": FETCH_WAIT_MS}, dedicated_controller=True)
    topic = "first-write"
    create_replicated(cluster, topic, 1)
    acked = produce_acked(cluster, topic, 50)
    alone = []
    for r, delay in enumerate(KILL_DELAYS_S):
        m = cluster.wait_full_isr(topic, 1, timeout=30)[0]
        leader, followers = m.leader, [x for x in m.replicas if x != m.leader]
        for f in followers:
            cluster.pause(f)
        try:
            time.sleep(2 * FETCH_WAIT_MS / 1000)  # their parked fetches answered: nothing reaches them
            i = 10**6 + r
            alone.append(i)
            with cluster.conn(leader) as c:
                w.produce_v3_send(c, topic, 0, raw_record(i), acks=1)
                time.sleep(delay)
                cluster.kill(leader)
        finally:
            for f in followers:
                cluster.resume(f)
        cluster.wait_new_leader(topic, 0, m)
        acked.update(produce_acked(cluster, topic, 50, first=50 * (r + 1)))
        cluster.restart(leader)
        try:
            cluster.wait_full_isr(topic, 1, timeout=30)
        except AssertionError as e:
            raise AssertionError(f"round {r} (kill {delay * 1000:.0f} ms after the write to broker {leader}): "
                                 f"it does not rejoin the ISR: {e}") from None
    log, _ = read_and_check(cluster, topic, 1, acked)
    assert not {value_of(i) for i in alone} & {v for _, v in log.values()}, "records written alone were kept"


# ---------------------------------------------------------------------------------------------
# 8. a leader killed -9 and restarted at once, within its session
# ---------------------------------------------------------------------------------------------
QUICK_RESTARTS = 4


def test_a_leader_restarted_within_its_session_gives_way_and_rejoins_the_isr(cluster_factory):
    # Restarted before the controller noticed it was gone, a broker must not lead again in its
    # old epoch (its log may have lost an unsynced tail its followers hold): the controller
    # fences the old incarnation and elects a leader in a new epoch; the broker rejoins the
    # ISR as a follower. An acks=all producer runs throughout.
    cluster = cluster_factory(REPLICATION)
    topic = "quick-restart"
    create_replicated(cluster, topic, 1)
    with AckedProducer(cluster.bootstrap(), topic, KEYS) as producer:
        producer.wait_acked(200)
        for r in range(QUICK_RESTARTS):
            m = cluster.wait_full_isr(topic, 1, timeout=30)[0]
            cluster.kill(m.leader)
            cluster.restart(m.leader)
            m2 = wait_for(f"round {r}: a leader epoch above {m.leader_epoch}",
                          lambda: (lambda s: s.leader >= 0 and s.leader_epoch > m.leader_epoch and s)(
                              cluster.state(topic, 0)), timeout=SESSION_TIMEOUT_MS / 1000 + 15, seen=cluster.seen)
            assert m2.leader in m.isr, (m, m2)
            producer.wait_acked(len(producer.acked) + 200, timeout=45)
            try:
                cluster.wait_full_isr(topic, 1, timeout=30)
            except AssertionError as e:
                raise AssertionError(f"round {r}: broker {m.leader}, restarted at once, does not rejoin: {e}") from None
        producer.stop()
    assert_all_acked(producer)
    read_and_check(cluster, topic, 1, producer.acked)


# ---------------------------------------------------------------------------------------------
# 9. SIGTERM under load: controlled shutdown moves leadership first
# ---------------------------------------------------------------------------------------------
SIGTERM_ROUNDS = 2


def test_sigterm_under_load_moves_leadership_first_and_producers_see_no_error(cluster_factory):
    # Two idempotent acks=all producers (librdkafka and the Java client, a topic each) write
    # without pause while a broker gets SIGTERM (the active controller's node, then the one
    # leading the most partitions): each hands its leaderships to other ISR members before it
    # exits, so neither producer sees any delivery error (retriable NOT_LEADER_OR_FOLLOWER
    # answers are retried inside the clients) and everything acknowledged is there exactly once.
    cluster = cluster_factory(REPLICATION)
    partitions = 6
    topics = {"confluent": "term-confluent", "java": "term-java"}
    for topic in topics.values():
        create_replicated(cluster, topic, partitions)
    bootstrap = cluster.bootstrap()
    producers = {"confluent": AckedProducer(bootstrap, topics["confluent"], KEYS),
                 "java": JavaAckedProducer(bootstrap, topics["java"], KEYS)}
    with producers["confluent"], producers["java"]:
        for p in producers.values():
            p.wait_acked(300, timeout=60)
        for r in range(SIGTERM_ROUNDS):
            # First the active controller (its broker must move its leaderships through the
            # quorum before its own voter leaves), then the broker leading the most partitions.
            led = collections.Counter(m.leader for t in topics.values() for m in cluster.partitions(t).values())
            victim = cluster.up()[0].active_controller() if r == 0 else led.most_common(1)[0][0]
            assert victim in cluster.ids(), f"no active controller among the brokers: {victim}"
            node = cluster.node(victim)
            code = node.stop()  # SIGTERM, waits for the exit
            assert code == 0, f"round {r}: node {victim} exited {code} after SIGTERM\n{node.log_tail()}"
            log = node.log_path.read_text(encoding="utf-8", errors="replace").rsplit("===== start #", 1)[-1]
            assert "controlled shutdown: leadership moved" in log, f"round {r}: no controlled shutdown\n{node.log_tail()}"
            for t in topics.values():  # every partition led by the others at once (no election wait)
                cluster.wait_all_led(t, partitions, not_by=(victim,), timeout=5)
            for p in producers.values():
                p.wait_acked(len(p.acked) + 300, timeout=45)
            cluster.restart(victim)
            for t in topics.values():
                cluster.wait_full_isr(t, partitions, timeout=45)
        for p in producers.values():
            p.wait_acked(len(p.acked) + 200, timeout=45)
            p.stop()
    for name, p in producers.items():
        assert not p.fatal, f"{name}: fatal producer errors: {p.fatal[:5]}"
        assert not p.errors, f"{name}: {len(p.errors)} delivery errors, first: {p.errors[:5]}"
        assert p.unflushed == 0, f"{name}: {p.unflushed} records unanswered after flush"
        read_and_check(cluster, topics[name], partitions, p.acked)


ELECTION_TOOL = "org.apache.kafka.tools.LeaderElectionCommand"


def test_kafka_leader_election_moves_leadership_back_to_the_preferred_replicas(cluster_factory):
    # After a failover the leaders stay where it put them (automatic rebalancing off);
    # Kafka's kafka-leader-election (ElectLeaders, preferred) gives each partition back to its
    # first replica, one epoch on.
    cluster = cluster_factory({**REPLICATION, "auto.leader.rebalance.enable": "false"})
    topic = "preferred"
    before = create_replicated(cluster, topic, 3)
    victim = before[0].leader
    assert before[0].replicas[0] == victim, before[0]
    cluster.kill(victim)
    moved = cluster.wait_new_leader(topic, 0, before[0])
    cluster.restart(victim)
    cluster.wait_full_isr(topic, 3)
    assert cluster.state(topic, 0).leader == moved.leader != victim, "no automatic rebalance"
    out = helpers.kafka_tool(ELECTION_TOOL, "--bootstrap-server", cluster.bootstrap(),
                             "--election-type", "PREFERRED", "--all-topic-partitions")
    assert "Successfully completed leader election (PREFERRED)" in out.stdout, out.stdout
    after = cluster.wait_all_led(topic, 3)
    for p, m in after.items():
        assert m.leader == m.replicas[0], (p, m)
    assert after[0].leader_epoch > moved.leader_epoch
    # Nothing left to move: the tool says so, as Kafka's does (no error).
    again = helpers.kafka_tool(ELECTION_TOOL, "--bootstrap-server", cluster.bootstrap(),
                               "--election-type", "PREFERRED", "--topic", topic, "--partition", "1",
                               check=False)
    assert "Valid replica already elected" in again.stdout + again.stderr, (again.stdout, again.stderr)


# ---------------------------------------------------------------------------------------------
# 10. replication metrics: bytes in and out, follower lag, ISR shrinks and expansions
# ---------------------------------------------------------------------------------------------
def test_replication_metrics_follow_bytes_lag_and_isr_changes(cluster_factory):
    # A session timeout far above the pause: the ISR shrinks because the leader sees the
    # follower lag (its AlterPartition counts), not because the controller fences it.
    cluster = cluster_factory({**REPLICATION, "broker.session.timeout.ms": 60000}, dedicated_controller=True)
    topic = "repl-metrics"
    m0 = create_replicated(cluster, topic, 1)[0]
    leader = m0.leader
    paused, other = [r for r in m0.replicas if r != leader]
    acked = produce_acked(cluster, topic, 500)
    node = cluster.node

    def lag(follower):
        return scrape(node(leader)).value("spate_follower_lag_records", default=-1, topic=topic, partition="0",
                                          follower=str(follower))

    wait_for("both followers caught up (lag 0 on the leader)", lambda: lag(paused) == 0 and lag(other) == 0,
             timeout=10)
    on_leader = scrape(node(leader))
    produced = on_leader.value("spate_topic_bytes_in_total", topic=topic)
    out = on_leader.value("spate_replication_bytes_out_total", topic=topic)
    assert produced > 500 * 10, produced
    # Each follower read every byte once (a little more if a fetch was answered twice).
    assert 2 * produced <= out <= 3 * produced, (produced, out)
    assert on_leader.value("spate_topic_bytes_out_total", topic=topic) == 0, "follower fetches counted as consumers'"
    assert on_leader.value("spate_replication_bytes_in_total", topic=topic) == 0
    for f in (paused, other):
        on_follower = scrape(node(f))
        appended = on_follower.value("spate_replication_bytes_in_total", topic=topic)
        assert appended == produced, (f, appended, produced)
        assert on_follower.value("spate_replication_bytes_out_total", topic=topic) == 0
        assert on_follower.value("spate_replica_fetcher_max_lag_records") == 0
    shrinks0 = on_leader.value("spate_isr_shrinks_total")
    expands0 = on_leader.value("spate_isr_expands_total")

    cluster.pause(paused)
    acked.update(produce_acked(cluster, topic, 200, first=500))  # acks=all: waits for the shrink
    cluster.wait_isr(topic, 0, {leader, other}, via=leader, timeout=LAG_MS / 1000 + 20)
    shrunk = scrape(node(leader))
    assert shrunk.value("spate_isr_shrinks_total") - shrinks0 == 1
    assert shrunk.value("spate_isr_expands_total") == expands0
    assert shrunk.value("spate_follower_lag_records", topic=topic, partition="0", follower=str(paused)) == 200
    assert shrunk.value("spate_under_replicated_partitions") == 1

    cluster.resume(paused)
    cluster.wait_isr(topic, 0, {leader, paused, other}, via=leader, timeout=30)
    wait_for("the resumed follower caught up (lag 0)", lambda: lag(paused) == 0, timeout=10)
    back = scrape(node(leader))
    assert back.value("spate_isr_expands_total") - expands0 == 1
    assert back.value("spate_isr_shrinks_total") - shrinks0 == 1
    assert back.value("spate_under_replicated_partitions") == 0
    assert scrape(node(paused)).value("spate_replication_bytes_in_total", topic=topic) == back.value(
        "spate_topic_bytes_in_total", topic=topic)
    read_and_check(cluster, topic, 1, acked)


# ---------------------------------------------------------------------------------------------
# 11. unclean elections through ElectLeaders (kafka-leader-election --election-type UNCLEAN)
# ---------------------------------------------------------------------------------------------
def test_kafka_leader_election_unclean_brings_an_offline_partition_back_with_a_replica_outside_the_isr(
        cluster_factory):
    # The followers are fenced (paused past the session timeout), so the leader is the ISR
    # alone; then it is killed: the last ISR member stays, the partition goes offline, and the
    # followers coming back cannot lead (they may lack acknowledged records). An unclean
    # election through the API (as Kafka's tool sends it) takes the first live replica, ISR
    # [it], a new leader epoch; the old leader rejoins as a follower.
    cluster = cluster_factory(REPLICATION, dedicated_controller=True)
    topic = "unclean"
    m0 = create_replicated(cluster, topic, 1)[0]
    acked = produce_acked(cluster, topic, 100)
    leader = m0.leader
    followers = [r for r in m0.replicas if r != leader]

    def elect():
        return helpers.kafka_tool(ELECTION_TOOL, "--bootstrap-server", cluster.bootstrap(), "--election-type",
                                  "UNCLEAN", "--topic", topic, "--partition", "0", check=False)

    led = elect()
    assert "Valid replica already elected" in led.stdout + led.stderr, (led.stdout, led.stderr)
    for f in followers:
        cluster.pause(f)
    cluster.wait_isr(topic, 0, {leader}, via=leader, timeout=SESSION_TIMEOUT_MS / 1000 + 15)
    cluster.kill(leader)
    for f in followers:
        cluster.resume(f)
    offline = wait_for("the partition offline, its last ISR member fenced and the followers back",
                       lambda: (lambda m: m.leader == -1 and cluster.live_brokers() == sorted(followers) and m)(
                           cluster.state(topic, 0)), timeout=SESSION_TIMEOUT_MS / 1000 + 15, seen=cluster.seen)
    assert offline.isr == [leader], offline
    out = elect()
    assert "Successfully completed leader election (UNCLEAN)" in out.stdout, (out.stdout, out.stderr)
    new = wait_for("an unclean leader", lambda: (lambda m: m.leader >= 0 and m)(cluster.state(topic, 0)),
                   timeout=10, seen=cluster.seen)
    first_live = next(r for r in m0.replicas if r in followers)
    # ISR [it] at the election; the other follower may have rejoined since.
    assert new.leader == first_live and leader not in new.isr and first_live in new.isr, new
    assert new.leader_epoch > offline.leader_epoch, (offline, new)
    read_and_check(cluster, topic, 1, acked)  # the followers had every acks=all record
    cluster.restart(leader)
    cluster.wait_full_isr(topic, 1, timeout=30)


# ---------------------------------------------------------------------------------------------
# 12. automatic leader rebalancing (auto.leader.rebalance.enable)
# ---------------------------------------------------------------------------------------------
REBALANCE_INTERVAL_S = 2


@pytest.mark.parametrize("enabled", [True, False], ids=["enabled", "disabled"])
def test_leaders_go_back_to_their_preferred_replicas_on_their_own(cluster_factory, enabled):
    # A failover moves a broker's partitions away; once it is back in their ISRs, the active
    # controller's imbalance check (every 2 s here) gives them back to it, as Kafka's does,
    # without any tool: the broker leads 0 of the 1 partition it prefers, 100% > 10%. Off,
    # the leaders stay where the failover put them.
    cluster = cluster_factory({**REPLICATION, "auto.leader.rebalance.enable": str(enabled).lower(),
                               "leader.imbalance.check.interval.seconds": REBALANCE_INTERVAL_S})
    topic = "rebalanced"
    before = create_replicated(cluster, topic, 3)
    assert all(m.leader == m.replicas[0] for m in before.values()), before
    victim = before[0].leader
    cluster.kill(victim)
    moved = cluster.wait_new_leader(topic, 0, before[0])
    cluster.restart(victim)
    if enabled:
        def preferred():  # every broker up agrees (a restarted one may answer an old image first)
            views = [cluster.partitions(topic, n.node_id) for n in cluster.up()]
            ok = all(m.leader == m.replicas[0] and sorted(m.isr) == sorted(m.replicas)
                     for v in views for m in v.values())
            epochs = {v[0].leader_epoch for v in views}
            return ok and len(epochs) == 1 and epochs.pop() > moved.leader_epoch and views[0]
        back = wait_for(f"{topic}: every partition led by its preferred replica again", preferred,
                        timeout=30, seen=cluster.seen)
        assert back[0].leader == victim and back[0].leader_epoch > moved.leader_epoch, (moved, back[0])
        return
    cluster.wait_full_isr(topic, 3)
    time.sleep(3 * REBALANCE_INTERVAL_S)  # three checks that must move nothing
    after = cluster.wait_full_isr(topic, 3)
    assert (after[0].leader, after[0].leader_epoch) == (moved.leader, moved.leader_epoch), (moved, after[0])


# ---------------------------------------------------------------------------------------------
# 13. KIP-951: a follower's NOT_LEADER_OR_FOLLOWER (and a stale epoch's FENCED_LEADER_EPOCH)
#    names the leader, its epoch and its endpoint
# ---------------------------------------------------------------------------------------------
def topic_id_of(conn: w.Conn, topic: str) -> bytes:
    (described,), _ = w.describe_topic_partitions_v0(conn, [topic])
    assert described.error == w.NONE and described.topic_id != bytes(16), described
    return described.topic_id


def assert_hint(answer: w.HintedAnswer, error: int, cluster, state: w.PartitionMeta, what: str):
    leader = cluster.node(state.leader)
    assert answer.error == error, f"{what}: error {answer.error}, expected {error}"
    assert answer.current_leader == (state.leader, state.leader_epoch), (
        f"{what}: hint {answer.current_leader}, leader {state.leader} in epoch {state.leader_epoch}")
    assert answer.endpoints == {state.leader: w.Endpoint(state.leader, leader.host, leader.port,
                                                         f"rack-{state.leader}")}, f"{what}: {answer.endpoints}"


def test_not_leader_answers_name_the_current_leader_its_epoch_and_endpoint(cluster_factory):
    cluster = cluster_factory(REPLICATION, racks={i: f"rack-{i}" for i in (1, 2, 3)})
    topic = "hinted"
    m = create_replicated(cluster, topic, 1)[0]
    follower = next(b for b in m.replicas if b != m.leader)
    with cluster.conn(follower) as c:
        topic_id = topic_id_of(c, topic)
        assert_hint(w.produce_v12(c, topic, 0, raw_record(0)), w.NOT_LEADER_OR_FOLLOWER, cluster, m,
                    f"Produce v12 to follower {follower}")
        assert_hint(w.fetch_v16(c, topic_id, 0), w.NOT_LEADER_OR_FOLLOWER, cluster, m,
                    f"Fetch v16 to follower {follower}")
    with cluster.conn(m.leader) as c:  # the leader answers without hints
        ok = w.produce_v12(c, topic, 0, raw_record(1))
        assert (ok.error, ok.base_offset, ok.current_leader, ok.endpoints) == (w.NONE, 0, (-1, -1), {}), ok
        fetched = w.fetch_v16(c, topic_id, 0)
        assert (fetched.error, fetched.current_leader, fetched.endpoints) == (w.NONE, (-1, -1), {}), fetched

    # After a failover the hints follow the new leader and epoch; a consumer still naming the
    # old epoch is fenced by the new leader with the same hint.
    cluster.kill(m.leader)
    new = cluster.wait_new_leader(topic, 0, m)
    other = next(b for b in new.replicas if b not in (new.leader, m.leader))
    with cluster.conn(other) as c:
        assert_hint(w.produce_v12(c, topic, 0, raw_record(2)), w.NOT_LEADER_OR_FOLLOWER, cluster, new,
                    f"Produce v12 to follower {other} after the failover")
        assert_hint(w.fetch_v16(c, topic_id, 0), w.NOT_LEADER_OR_FOLLOWER, cluster, new,
                    f"Fetch v16 to follower {other} after the failover")
    with cluster.conn(new.leader) as c:
        assert_hint(w.fetch_v16(c, topic_id, 0, current_leader_epoch=m.leader_epoch), w.FENCED_LEADER_EPOCH,
                    cluster, new, f"Fetch v16 in epoch {m.leader_epoch} to the new leader {new.leader}")


# ---------------------------------------------------------------------------------------------
# 14. DescribeTopicPartitions: Kafka's pagination, and kafka-topics --describe goes through it
# ---------------------------------------------------------------------------------------------
def describe_requests(cluster) -> float:
    """DescribeTopicPartitions requests served so far by the brokers up."""
    return sum(scrape(n).value("spate_requests_total", api="DescribeTopicPartitions")
               for n in cluster.up())


def test_describe_topic_partitions_pages_by_cursor_and_kafka_topics_describe_uses_it(cluster_factory):
    cluster = cluster_factory(REPLICATION)
    sizes = {"pages-a": 5, "pages-b": 2}
    states = {t: create_replicated(cluster, t, n) for t, n in sizes.items()}
    wanted = ["pages-b", "missing", "pages-a"]

    def page(conn, cursor):
        found, next_cursor = w.describe_topic_partitions_v0(conn, wanted, limit=3, cursor=cursor)
        return [(t.name, t.error, sorted(t.partitions)) for t in found], next_cursor, found

    with cluster.conn(cluster.ids()[-1]) as c:
        # Sorted by name; an unknown name takes no room; 3 partitions per answer.
        got, cursor, first = page(c, None)
        assert (got, cursor) == ([("missing", w.UNKNOWN_TOPIC_OR_PARTITION, []), ("pages-a", 0, [0, 1, 2])],
                                 ("pages-a", 3)), (got, cursor)
        got, cursor, second = page(c, cursor)
        assert (got, cursor) == ([("pages-a", 0, [3, 4]), ("pages-b", 0, [0])], ("pages-b", 1)), (got, cursor)
        got, cursor, third = page(c, cursor)
        assert (got, cursor) == ([("pages-b", 0, [1])], None), (got, cursor)
        # Each partition as Metadata shows it; no eligible leader replicas (empty, not null).
        described = {}
        for t in first + second + third:
            if t.error == w.NONE:
                assert t.topic_id != bytes(16) and not t.is_internal, t
                assert t.authorized_operations == -2147483648, t
                assert all(e == ([], []) for e in t.elr.values()), t.elr
                described.update({(t.name, p): m for p, m in t.partitions.items()})
        assert described == {(t, p): m for t, parts in states.items() for p, m in parts.items()}
        # Every topic (the internal one included) when none is named.
        found, next_cursor = w.describe_topic_partitions_v0(c)
        assert next_cursor is None and {"pages-a", "pages-b"} <= {t.name for t in found}, found
        # A cursor on a topic not asked for: INVALID_REQUEST for every topic asked for.
        found, _ = w.describe_topic_partitions_v0(c, ["pages-b", "pages-a"], cursor=("other", 0))
        assert [(t.name, t.error) for t in found] == [("pages-b", w.INVALID_REQUEST), ("pages-a", w.INVALID_REQUEST)]

    # Kafka 4.3's kafka-topics pages through the 5 partitions 2 at a time.
    before = describe_requests(cluster)
    out = helpers.kafka_tool(TOPICS_TOOL, "--bootstrap-server", cluster.bootstrap(), "--describe", "--topic",
                             "pages-a", "--partition-size-limit-per-response", "2").stdout
    rows = {}
    for ln in out.splitlines():
        found = re.search(r"Partition: (\d+)\s+Leader: (-?\d+)\s+Replicas: ([\d,]+)\s+Isr: ([\d,]*)", ln)
        if found:
            p, leader, replicas, isr = found.groups()
            rows[int(p)] = (int(leader), [int(x) for x in replicas.split(",")], sorted(int(x) for x in isr.split(",")))
    assert rows == {p: (m.leader, m.replicas, sorted(m.isr)) for p, m in states["pages-a"].items()}, out
    assert describe_requests(cluster) - before >= 3, "kafka-topics --describe did not page with DescribeTopicPartitions"
