"""Bounds on what one request or one client can make the broker hold (issue 18): the Fetch
byte budget (`fetch.max.bytes`, granted to partitions before they are read) and the connection
quotas (`max.connections`, `max.connections.per.ip` and its overrides), over the wire."""

import time

import pytest

from kafka_wire import (
    Closed,
    Conn,
    Rec,
    api_versions,
    create_topics_v2,
    decode_batches,
    fetch_partitions_v4,
    produce_v3,
    record_batch,
)
from metrics_scrape import scrape

PARTITIONS = 12
BATCHES = 4
RECORDS_PER_BATCH = 4
VALUE = b"x" * 4000  # a batch is a little over 16 KB


def batch_for(partition, index):
    return record_batch(
        [Rec(key=f"{partition}-{index}-{i}".encode(), value=VALUE) for i in range(RECORDS_PER_BATCH)]
    )


BATCH_BYTES = len(batch_for(0, 0))


def fill(broker, topic, partitions=range(PARTITIONS)):
    with Conn(broker.host, broker.port) as c:
        err, msg = create_topics_v2(c, topic, PARTITIONS)
        assert err == 0, (err, msg)
        for p in partitions:
            for i in range(BATCHES):
                err, _ = produce_v3(c, topic, p, batch_for(p, i), acks=1)
                assert err == 0, (p, i, err)


def records_in(data):
    batches = decode_batches(data)
    assert all(b.crc_ok for b in batches)
    return sum(len(b.records) for b in batches)


def test_fetch_max_bytes_caps_a_request_for_many_lagging_partitions(broker_factory):
    # The broker's fetch.max.bytes bounds the answer whatever the request's max_bytes, and the
    # partitions past the budget are not read at all; consumers reach everything by fetching
    # on from where each answer ended.
    budget = 4 * BATCH_BYTES + 100
    b = broker_factory(settings={"fetch.max.bytes": budget})
    fill(b, "lagging")
    offsets = {p: 0 for p in range(PARTITIONS)}
    total = PARTITIONS * BATCHES * RECORDS_PER_BATCH
    got = 0
    answers = 0
    with Conn(b.host, b.port) as c:
        while got < total:
            answers += 1
            assert answers <= 3 * PARTITIONS, f"no progress: {offsets}"
            out = fetch_partitions_v4(c, "lagging", offsets, max_bytes=1 << 30, partition_max_bytes=1 << 20)
            assert list(out) == list(offsets), "every partition answered, in request order"
            size = sum(len(data) for _, _, data in out.values())
            assert 0 < size <= budget, f"answer of {size} bytes, budget {budget}"
            for p, (err, hw, data) in out.items():
                assert err == 0 and hw == BATCHES * RECORDS_PER_BATCH, (p, err, hw)
                n = records_in(data)
                offsets[p] += n
                got += n
    assert offsets == {p: BATCHES * RECORDS_PER_BATCH for p in range(PARTITIONS)}
    # Before the budget, the first answer alone would have carried every partition.
    assert answers >= PARTITIONS * BATCHES * BATCH_BYTES // budget


def test_the_budget_left_by_caught_up_partitions_goes_to_the_lagging_ones_behind_them(broker_factory):
    # Partitions 0-5 are empty (a consumer at their end); 6-11 have records. The first round
    # grants the budget to 0-3, which read nothing; a second round gives it to 6 onwards.
    b = broker_factory(settings={"fetch.max.bytes": 4 * BATCH_BYTES})
    fill(b, "half", partitions=range(6, PARTITIONS))
    with Conn(b.host, b.port) as c:
        out = fetch_partitions_v4(c, "half", {p: 0 for p in range(PARTITIONS)},
                                  max_bytes=1 << 30, partition_max_bytes=BATCH_BYTES)
    counts = {p: records_in(data) for p, (_, _, data) in out.items()}
    assert all(counts[p] == 0 for p in range(6)), counts
    assert [counts[p] for p in range(6, 10)] == [RECORDS_PER_BATCH] * 4, counts
    assert all(out[p][1] == (0 if p < 6 else BATCHES * RECORDS_PER_BATCH) for p in out)


def test_the_request_max_bytes_still_binds_below_the_broker_bound(broker):
    fill(broker, "small-ask")
    with Conn(broker.host, broker.port) as c:
        out = fetch_partitions_v4(c, "small-ask", {p: 0 for p in range(PARTITIONS)},
                                  max_bytes=2 * BATCH_BYTES, partition_max_bytes=1 << 20)
    sizes = [len(data) for _, _, data in out.values()]
    assert sum(sizes) == 2 * BATCH_BYTES and sizes[0] == 2 * BATCH_BYTES, sizes


def ask(conn):
    """ApiVersions on `conn`: True answered, False closed by the broker."""
    try:
        return api_versions(conn)[0] == 0
    except (Closed, ConnectionResetError, BrokenPipeError):
        return False


def settle(broker, open_connections=0, timeout=10):
    """Waits until the broker counts `open_connections` (the readiness probe's closes late)."""
    deadline = time.monotonic() + timeout
    while scrape(broker).value("spate_connections") != open_connections:
        assert time.monotonic() < deadline, scrape(broker).value("spate_connections")
        time.sleep(0.05)


def test_max_connections_per_ip_closes_the_extra_connection_and_overrides_apply(broker_factory):
    b = broker_factory(settings={"max.connections.per.ip": 3,
                                 "max.connections.per.ip.overrides": "127.0.0.2:1"})
    settle(b)
    held = [Conn(b.host, b.port) for _ in range(3)]
    try:
        assert all(ask(c) for c in held)
        with Conn(b.host, b.port) as extra:
            assert not ask(extra), "a fourth connection from 127.0.0.1 is closed"
        with Conn(b.host, b.port, source="127.0.0.2") as other:
            assert ask(other), "another address has its own count"
            with Conn(b.host, b.port, source="127.0.0.2") as second:
                assert not ask(second), "127.0.0.2 is overridden to one connection"
        held.pop().close()
        deadline = time.monotonic() + 10
        while True:
            with Conn(b.host, b.port) as again:
                if ask(again):
                    break
            assert time.monotonic() < deadline, "the closed connection's slot never came back"
            time.sleep(0.1)
        assert all(ask(c) for c in held), "the connections within the bound were never disturbed"
    finally:
        for c in held:
            c.close()
    m = scrape(b)
    assert m.value("spate_connections_refused_total") >= 2
    assert m.value("spate_connection_slot_waits_total") == 0


def test_max_connections_holds_new_clients_back_until_one_closes(broker_factory):
    # Kafka's acceptor stops accepting at max.connections; a new client waits in the backlog
    # and is served once a connection closes.
    b = broker_factory(settings={"max.connections": 3})
    settle(b)
    held = [Conn(b.host, b.port) for _ in range(3)]
    try:
        assert all(ask(c) for c in held)
        waiting = Conn(b.host, b.port, timeout=1.0)
        with pytest.raises(TimeoutError):
            api_versions(waiting)
        m = scrape(b)
        assert m.value("spate_connections") == 3 and m.value("spate_connection_slot_waits_total") >= 1
        held.pop().close()
        waiting.sock.settimeout(10.0)
        # The ApiVersions sent before is answered once the connection is accepted.
        assert waiting.recv_response(waiting.corr).i16() == 0
        waiting.close()
    finally:
        for c in held:
            c.close()


@pytest.mark.parametrize("client", ["confluent", "java"])
def test_real_consumers_read_everything_through_a_small_fetch_max_bytes(broker_factory, client):
    # librdkafka and the Java consumer ask for 50 MiB per Fetch and 1 MiB per partition; a
    # broker bound of 64 KiB makes every answer carry a small part of 8 partitions' backlog.
    # They still read every record, in order, with the content produced.
    from helpers import consume, create_topic, produce, verify

    b = broker_factory(settings={"fetch.max.bytes": 65536})
    create_topic(b.bootstrap, "bounded", 8)
    produce("confluent", b.bootstrap, "bounded", 5000, acks="all")
    records = consume(client, b.bootstrap, "bounded", 8, 5000)
    verify(records, "confluent", 5000, b.bootstrap, "bounded", 8)
