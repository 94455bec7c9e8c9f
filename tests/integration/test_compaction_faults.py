"""Compaction under pressure: the IO budget (`log.cleaner.io.max.bytes.per.second`) slows a pass
down to what it allows, and a process killed at any step of a compaction swap
(`SPATE_FAULT_COMPACTION_KILL_AT`, storage/src/log/compaction.rs) restarts into a log holding
every acknowledged record's latest value per key, then compacts and takes writes again.

Each test fills the log on a broker that runs no compaction (a long
`log.retention.check.interval.ms`), then restarts it with checks every 200 ms, so the pass it
watches covers the whole log."""

import re
import signal
import time

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

pytestmark = pytest.mark.spate_only("Spate's compaction log lines and fault injection")

NO_CHECKS = {"log.retention.check.interval.ms": "600000"}
FAST_CHECKS = {"log.retention.check.interval.ms": "200"}
KEYS = [b"k%d" % i for i in range(10)]


def create(broker, topic, **configs):
    a = AdminClient({"bootstrap.servers": broker.bootstrap})
    fs = a.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1, config=configs)])
    fs[topic].result(30)


def producer(broker):
    # Small batches: a segment rolls only between batches.
    return Producer({"bootstrap.servers": broker.bootstrap, "acks": "all", "linger.ms": 5,
                     "batch.size": 16384})


def produce_acked(p, topic, records):
    """Produces (key, value) pairs; returns {offset: (key, value)} of what was acknowledged."""
    acked, errors = {}, []

    def delivered(err, msg):
        if err is not None:
            errors.append(err)
        else:
            acked[msg.offset()] = (msg.key(), msg.value())

    for key, value in records:
        p.produce(topic, key=key, value=value, partition=0, on_delivery=delivered)
    assert p.flush(30) == 0 and not errors, errors
    return acked


def read_all(broker, topic, high, timeout=20.0):
    """Every record of partition 0 below `high`: [(offset, key, value)]."""
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "unused",
                  "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    c.assign([TopicPartition(topic, 0, 0)])
    out = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is None:
                continue
            assert m.error() is None, m.error()
            out.append((m.offset(), m.key(), m.value()))
            if m.offset() == high - 1:
                break
    finally:
        c.close()
    return out


def restart_with(broker, settings):
    broker.stop()
    broker.settings.update(settings)
    broker.start()


def compaction_lines(log):
    """(elapsed_ms, bytes_after) of every 'compacted' line."""
    out = []
    for line in log.splitlines():
        if " compacted " not in line + " ":
            continue
        elapsed = re.search(r"elapsed_ms=(\d+)", line)
        after = re.search(r"bytes_after=(\d+)", line)
        if elapsed and after:
            out.append((int(elapsed.group(1)), int(after.group(1))))
    return out


BUDGET = 64 * 1024  # bytes per second


def test_a_compaction_pass_takes_at_least_the_time_its_io_budget_implies(broker_factory):
    """About 400 KiB of unique keys (nothing to remove: the pass rewrites all of it) under a
    64 KiB/s budget: the pass takes at least bytes_after / budget (about 6 s). Without the
    budget (the 64 MiB/s default, or the setting ignored) it takes milliseconds."""
    b = broker_factory(settings={**NO_CHECKS, "log.cleaner.io.max.bytes.per.second": str(BUDGET)})
    create(b, "budget", **{"cleanup.policy": "compact", "segment.bytes": "65536"})
    p = producer(b)
    records = [(b"key-%05d" % i, b"v" * 200) for i in range(2000)]
    assert len(produce_acked(p, "budget", records)) == 2000
    restart_with(b, FAST_CHECKS)
    b.wait_for_log(" compacted ", timeout=60)
    log = b.wait_for_log("bytes_after=", timeout=5)
    passes = compaction_lines(log)
    assert passes, b.log_tail()
    for elapsed_ms, bytes_after in passes:
        floor_ms = bytes_after * 1000 // BUDGET
        # A generous lower bound (the pass sleeps at least this long), not a speed claim.
        assert elapsed_ms >= 0.9 * floor_ms, (
            f"a pass wrote {bytes_after} bytes in {elapsed_ms} ms: faster than the "
            f"{BUDGET} bytes/s budget allows ({floor_ms} ms)")
    assert max(after for _, after in passes) >= 256 * 1024, passes
    # Nothing was removed: every record is still there.
    assert len(read_all(b, "budget", 2000)) == 2000


SWAP_STEPS = ["rewritten", "old_index_removed", "renamed", "one_merged_removed", "index_written"]


@pytest.mark.parametrize("step", SWAP_STEPS)
def test_a_process_killed_in_a_compaction_swap_recovers_every_keys_latest_value(
        broker_factory, monkeypatch, step):
    """Ten rounds of values for ten keys, each round in its own small segment (segment.ms),
    then one record of another key in the active segment: the pass merges the ten segments
    into one, and the process is killed at `step` of that swap. After a restart the log
    holds each key's latest acknowledged value at its offset (earlier values only where the
    pass had not yet removed them), nothing else, compaction finishes, and produce works."""
    b = broker_factory(settings=NO_CHECKS)
    create(b, "swapped", **{"cleanup.policy": "compact", "segment.bytes": "1048576",
                            "segment.ms": "100"})
    p = producer(b)
    acked = {}
    for rnd in range(10):
        acked.update(produce_acked(p, "swapped", [(k, b"r%d-%s" % (rnd, k)) for k in KEYS]))
        time.sleep(0.25)  # past segment.ms: the next round rolls a new segment
    acked.update(produce_acked(p, "swapped", [(b"tail", b"tail")]))
    high = len(acked)
    assert high == 101 and sorted(acked) == list(range(high))
    latest = {}
    for offset in sorted(acked):
        key, value = acked[offset]
        latest[key] = (offset, value)
    segments = list((b.data_dir / "swapped-0").glob("*.log"))
    assert len(segments) >= 10, "each round is in its own segment"

    monkeypatch.setenv("SPATE_FAULT_COMPACTION_KILL_AT", step)
    b.stop()
    b.settings.update(FAST_CHECKS)
    b.spawn()  # it may die before it is ready
    b.proc.wait(60)
    assert b.proc.returncode == -signal.SIGKILL, f"exit {b.proc.returncode}\n{b.log_tail()}"
    b.wait_for_log(f"injected fault: SPATE_FAULT_COMPACTION_KILL_AT={step}; killing the process")
    monkeypatch.delenv("SPATE_FAULT_COMPACTION_KILL_AT")

    b.start()
    records = read_all(b, "swapped", high)
    for offset, key, value in records:
        assert acked.get(offset) == (key, value), f"offset {offset}: {key}={value} was never acknowledged there"
    last_seen = {}
    for offset, key, value in records:
        last_seen[key] = (offset, value)
    assert last_seen == latest, "every key's latest acknowledged value, at its offset"

    def compacted():
        got = read_all(b, "swapped", high, timeout=5)
        return got if len(got) == len(latest) else None

    deadline = time.monotonic() + 30
    while (got := compacted()) is None:
        assert time.monotonic() < deadline, "compaction did not finish after the restart"
        time.sleep(0.5)
    assert {key: (offset, value) for offset, key, value in got} == latest
    # The broker takes writes after the offsets it recovered.
    assert list(produce_acked(producer(b), "swapped", [(b"k0", b"after")])) == [high]
