"""Idempotent produce over hand-encoded requests: a retried batch is stored once, a gap is refused,
and idle producer state expires after `producer.id.expiration.ms`."""

import time

import kafka_wire as w
from conftest import REFERENCE
from helpers import create_topic


def _batch(pid, epoch, seq, n, tag):
    recs = [w.Rec(f"k{tag}{j}".encode(), f"idem-{tag}-{j}".encode(), [("j", str(j).encode())], j) for j in range(n)]
    return w.record_batch(recs, producer_id=pid, producer_epoch=epoch, base_sequence=seq)


def init_producer_id(c, timeout=30):
    """InitProducerId v0, retried while the broker answers 14/15 (coordinator loading / not
    available: Kafka while it sets up its transaction state; Spate never)."""
    deadline = time.monotonic() + timeout
    while True:
        err, pid, epoch = w.init_producer_id_v0(c)
        if err not in (14, 15) or time.monotonic() > deadline:
            return err, pid, epoch
        time.sleep(0.2)


def test_duplicate_batch_is_stored_once(broker):
    topic = "idem"
    create_topic(broker.bootstrap, topic, 1)
    with w.Conn(broker.host, broker.port) as c:
        err, ranges = w.api_versions(c, 0)
        assert err == 0 and w.INIT_PRODUCER_ID in ranges
        err, pid, epoch = init_producer_id(c)
        assert err == 0, f"InitProducerId error {err}"
        assert pid >= 0 and epoch >= 0, (pid, epoch)

        first = _batch(pid, epoch, 0, 5, "a")
        err1, base1 = w.produce_v3(c, topic, 0, first)
        assert (err1, base1) == (0, 0), f"first produce: error {err1}, base offset {base1}"

        # the same bytes again, as a producer retrying after a lost response
        err2, base2 = w.produce_v3(c, topic, 0, first)
        assert err2 == 0, f"duplicate produce: error {err2} (expected 0)"
        assert base2 == base1, f"duplicate produce: base offset {base2}, first was {base1}"

        hw, recs = w.fetch_all_v4(c, topic, 0)
        assert hw == 5, f"high watermark {hw} after one batch of 5 sent twice"
        assert [r[0] for r in recs] == [0, 1, 2, 3, 4]
        assert [r[2] for r in recs] == [f"idem-a-{j}".encode() for j in range(5)]

        # a sequence gap (expected 5, sent 10) is refused and stores nothing
        gap = _batch(pid, epoch, 10, 3, "gap")
        err3, _ = w.produce_v3(c, topic, 0, gap)
        assert err3 == w.OUT_OF_ORDER_SEQUENCE_NUMBER, f"sequence gap: error {err3}, expected 45"
        hw, recs = w.fetch_all_v4(c, topic, 0)
        assert hw == 5 and len(recs) == 5, f"after refused gap: hw {hw}, {len(recs)} records"

        # the next in-order batch still goes through
        nxt = _batch(pid, epoch, 5, 2, "b")
        err4, base4 = w.produce_v3(c, topic, 0, nxt)
        assert (err4, base4) == (0, 5), f"in-order batch after gap: error {err4}, base {base4}"

    # a fresh connection (as a restarted consumer) sees each record exactly once
    with w.Conn(broker.host, broker.port) as c2:
        hw, recs = w.fetch_all_v4(c2, topic, 0)
    assert hw == 7
    values = [r[2] for r in recs]
    assert values == [f"idem-a-{j}".encode() for j in range(5)] + [b"idem-b-0", b"idem-b-1"]


def test_idle_producer_state_expires_after_producer_id_expiration_ms(broker_factory):
    # Kafka's producer.id.expiration.ms: a producer's state (kept to deduplicate retries) goes
    # that long after its last batch's timestamp, so the state grows with the producers in
    # use, not with every producer id ever seen. A retry after that is appended again.
    expiration_ms = 3000
    b = broker_factory(settings={"producer.id.expiration.ms": expiration_ms,
                                 "producer.id.expiration.check.interval.ms": 200})
    topic = "idem-expiry"
    create_topic(b.bootstrap, topic, 1)
    with w.Conn(b.host, b.port) as c:
        err, pid, epoch = init_producer_id(c)
        assert err == 0, f"InitProducerId error {err}"
        now_ms = int(time.time() * 1000)
        recs = [w.Rec(b"k", f"exp-{j}".encode(), [], j) for j in range(5)]
        batch = w.record_batch(recs, producer_id=pid, producer_epoch=epoch, base_sequence=0, base_timestamp=now_ms)
        sent = time.monotonic()
        assert w.produce_v3(c, topic, 0, batch) == (0, 0)
        assert w.produce_v3(c, topic, 0, batch) == (0, 0), "a retry within the expiration is deduplicated"
        # The same batch again until the broker no longer knows the producer: then it is new.
        while True:
            err, base = w.produce_v3(c, topic, 0, batch)
            assert err == 0, f"retry: error {err}"
            if base != 0:
                break
            assert time.monotonic() - sent < 30, "producer state never expired"
            time.sleep(0.25)
        waited = time.monotonic() - sent
        assert base == 5, base
        assert waited >= expiration_ms / 1000 - 0.5, f"state expired after {waited:.1f}s, before {expiration_ms} ms"
        hw, got = w.fetch_all_v4(c, topic, 0)
        assert hw == 10 and [r[2] for r in got] == [f"exp-{j}".encode() for j in range(5)] * 2
    if not REFERENCE:  # Spate's log line
        b.wait_for_log("expired idle producer state")


def test_producer_ids_come_from_blocks_and_are_never_handed_out_twice_even_after_a_restart(broker):
    # Each shard takes a block of 1000 ids from the controller (Kafka's ProducerIdsBlock);
    # InitProducerId answers from it. Ids are unique across connections (shards) and restarts.
    def ids(n):
        got = []
        for _ in range(n):
            with w.Conn(broker.host, broker.port) as c:  # new connections land on either shard
                err, pid, epoch = init_producer_id(c)
                assert (err, epoch) == (0, 0), (err, epoch)
                got.append(pid)
        return got

    before = ids(40)
    assert len(set(before)) == len(before), before
    # Ids from one block follow each other: at most one block per shard was taken.
    assert max(before) - min(before) < 2 * 1000, before
    broker.kill()  # a crash: the blocks the shards held are lost, never reused
    broker.restart()
    after = ids(40)
    assert len(set(after)) == len(after) and not set(before) & set(after), (before, after)
