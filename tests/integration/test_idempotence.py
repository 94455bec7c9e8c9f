"""Idempotent produce over hand-encoded requests: a retried batch is stored once, a gap is refused."""

import time

import kafka_wire as w
from helpers import create_topic


def _batch(pid, epoch, seq, n, tag):
    recs = [w.Rec(f"k{tag}{j}".encode(), f"idem-{tag}-{j}".encode(), [("j", str(j).encode())], j) for j in range(n)]
    return w.record_batch(recs, producer_id=pid, producer_epoch=epoch, base_sequence=seq)


def test_duplicate_batch_is_stored_once(broker):
    topic = "idem"
    create_topic(broker.bootstrap, topic, 1)
    with w.Conn(broker.host, broker.port) as c:
        err, ranges = w.api_versions(c, 0)
        assert err == 0 and w.INIT_PRODUCER_ID in ranges
        deadline = time.monotonic() + 30
        while True:  # 14/15: coordinator still loading / not available yet: retriable
            err, pid, epoch = w.init_producer_id_v0(c)
            if err not in (14, 15) or time.monotonic() > deadline:
                break
            time.sleep(0.2)
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
