"""Broker behaviour a Kafka user relies on, checked over the wire: Fetch long polling,
ListOffsets by timestamp, topic admin error codes, and the `spate start` command line."""

import re
import shutil
import signal
import socket
import subprocess
import threading
import time

import pytest

from conftest import SPATE_BIN, IT_DIR
from kafka_wire import (
    Conn,
    Rec,
    create_topics_v2,
    decode_batches,
    fetch_v4,
    list_offsets_v1,
    list_offsets_v7,
    offset_for_leader_epoch_v3,
    metadata_v1,
    produce_v3,
    record_batch,
)

OFFSET_OUT_OF_RANGE = 1
UNKNOWN_TOPIC_OR_PARTITION = 3
INVALID_TOPIC_EXCEPTION = 17
TOPIC_ALREADY_EXISTS = 36
UNKNOWN_LEADER_EPOCH = 75


TS0 = 1_700_000_000_000


def records(n):
    """n records whose timestamps are the batch's base timestamp plus 0..n-1."""
    return [Rec(key=f"k{i}".encode(), value=f"v{i}".encode(), timestamp_delta=i) for i in range(n)]


def make_topic(broker, name, partitions=1):
    with Conn(broker.host, broker.port) as conn:
        err, msg = create_topics_v2(conn, name, partitions)
        assert err == 0, (err, msg)


def test_fetch_long_poll_waits_for_max_wait_when_there_is_no_data(broker):
    make_topic(broker, "idle")
    with Conn(broker.host, broker.port) as conn:
        start = time.monotonic()
        err, hw, data = fetch_v4(conn, "idle", 0, offset=0, max_wait_ms=700)
        elapsed = time.monotonic() - start
    assert (err, hw, data) == (0, 0, b"")
    assert elapsed >= 0.6, f"Fetch answered after {elapsed:.3f}s, before max_wait_ms=700"


def test_fetch_long_poll_is_woken_by_a_produce_on_another_connection(broker):
    # Several partitions so the waiting fetch and the produce may live on different shards.
    make_topic(broker, "wake", partitions=4)
    result = {}

    def long_poll():
        with Conn(broker.host, broker.port) as conn:
            start = time.monotonic()
            result["fetch"] = fetch_v4(conn, "wake", 3, offset=0, max_wait_ms=20_000)
            result["elapsed"] = time.monotonic() - start

    poller = threading.Thread(target=long_poll)
    poller.start()
    time.sleep(0.5)
    with Conn(broker.host, broker.port) as conn:
        err, base = produce_v3(conn, "wake", 3, record_batch(records(3)))
        assert (err, base) == (0, 0)
    poller.join(30)
    err, hw, data = result["fetch"]
    assert err == 0 and hw == 3
    assert [r[0] for b in decode_batches(data) for r in b.records] == [0, 1, 2]
    assert result["elapsed"] < 10, "the fetch waited for max_wait_ms instead of being woken"


def test_fetch_past_the_end_is_out_of_range_and_at_the_end_is_empty(broker):
    # As Kafka's failed read (ReplicaManager: UnifiedLog.UnknownOffset): OFFSET_OUT_OF_RANGE
    # with high watermark -1; a consumer looks the bounds up with ListOffsets.
    make_topic(broker, "ends")
    with Conn(broker.host, broker.port) as conn:
        assert produce_v3(conn, "ends", 0, record_batch(records(2))) == (0, 0)
        assert fetch_v4(conn, "ends", 0, offset=2, max_wait_ms=0)[:2] == (0, 2)
        assert fetch_v4(conn, "ends", 0, offset=2, max_wait_ms=0)[2] == b""
        err, hw, _ = fetch_v4(conn, "ends", 0, offset=3, max_wait_ms=0)
        assert (err, hw) == (OFFSET_OUT_OF_RANGE, -1)


def test_a_request_naming_a_leader_epoch_this_broker_does_not_know_is_refused(broker):
    # KIP-320: a client's current_leader_epoch newer than the partition's gets
    # UNKNOWN_LEADER_EPOCH (it should refresh its metadata); -1 and the current epoch pass.
    make_topic(broker, "epochs")
    with Conn(broker.host, broker.port) as conn:
        assert produce_v3(conn, "epochs", 0, record_batch(records(3))) == (0, 0)
        assert list_offsets_v7(conn, "epochs", [0], -1)[0] == (0, -1, 3)
        assert list_offsets_v7(conn, "epochs", [0], -1, current_leader_epoch=0)[0] == (0, -1, 3)
        err, _, offset = list_offsets_v7(conn, "epochs", [0], -1, current_leader_epoch=7)[0]
        assert (err, offset) == (UNKNOWN_LEADER_EPOCH, -1)


def test_offset_for_leader_epoch_answers_from_the_logs_epochs(broker):
    # The one leader epoch (0) started at offset 0 and is the latest: its end is the log end.
    # A newer epoch than any known gets UNDEFINED (-1, -1), as Kafka's endOffsetFor answers;
    # a newer current_leader_epoch than the partition's gets UNKNOWN_LEADER_EPOCH.
    make_topic(broker, "epoch-ends")
    with Conn(broker.host, broker.port) as conn:
        assert produce_v3(conn, "epoch-ends", 0, record_batch(records(4))) == (0, 0)
        assert offset_for_leader_epoch_v3(conn, "epoch-ends", 0, 0) == (0, 0, 4)
        assert offset_for_leader_epoch_v3(conn, "epoch-ends", 0, 0, current_leader_epoch=0) == (0, 0, 4)
        assert offset_for_leader_epoch_v3(conn, "epoch-ends", 0, 3) == (0, -1, -1)
        err = offset_for_leader_epoch_v3(conn, "epoch-ends", 0, 0, current_leader_epoch=2)[0]
        assert err == UNKNOWN_LEADER_EPOCH
        assert offset_for_leader_epoch_v3(conn, "epoch-ends", 9, 0)[0] == UNKNOWN_TOPIC_OR_PARTITION
        # Fetched batches carry the leader epoch the broker stamped (KIP-101), not the
        # producer's value.
        batch = record_batch(records(1))
        batch = batch[:12] + (77).to_bytes(4, "big") + batch[16:]
        assert produce_v3(conn, "epoch-ends", 0, batch) == (0, 4)
        data = fetch_v4(conn, "epoch-ends", 0, offset=0)[2]
        assert [int.from_bytes(data[o + 12:o + 16], "big") for o in batch_offsets(data)] == [0, 0]


def batch_offsets(data):
    """Byte positions of the batches in a fetched records blob."""
    out, pos = [], 0
    while pos + 12 <= len(data):
        out.append(pos)
        pos += 12 + int.from_bytes(data[pos + 8:pos + 12], "big")
    return out


def test_list_offsets_earliest_latest_and_by_timestamp(broker):
    make_topic(broker, "times")
    ts0 = TS0
    with Conn(broker.host, broker.port) as conn:
        assert produce_v3(conn, "times", 0, record_batch(records(10), base_timestamp=ts0))[0] == 0
        batch = record_batch(records(10), base_timestamp=ts0 + 100)
        assert produce_v3(conn, "times", 0, batch)[0] == 0
        assert list_offsets_v1(conn, "times", [0], -2) == {0: (0, 0)}
        assert list_offsets_v1(conn, "times", [0], -1) == {0: (0, 20)}
        # Record-level lookups inside the first and the second batch.
        assert list_offsets_v1(conn, "times", [0], ts0 + 5) == {0: (0, 5)}
        assert list_offsets_v1(conn, "times", [0], ts0 + 50) == {0: (0, 10)}
        assert list_offsets_v1(conn, "times", [0], ts0 + 103) == {0: (0, 13)}
        # Later than every record: no offset, as Kafka answers.
        assert list_offsets_v1(conn, "times", [0], ts0 + 10_000) == {0: (0, -1)}


def test_create_topics_errors_and_delete(broker):
    with Conn(broker.host, broker.port) as conn:
        assert create_topics_v2(conn, "admin-t", 3)[0] == 0
        assert create_topics_v2(conn, "admin-t", 3)[0] == TOPIC_ALREADY_EXISTS
        assert create_topics_v2(conn, "bad/name", 1)[0] == INVALID_TOPIC_EXCEPTION
        assert create_topics_v2(conn, "x" * 250, 1)[0] == INVALID_TOPIC_EXCEPTION
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    admin.delete_topics(["admin-t"])["admin-t"].result(30)
    with Conn(broker.host, broker.port) as conn:
        # Kafka drops the partitions a moment after answering (Spate before): wait for it.
        deadline = time.monotonic() + 30
        while (err := produce_v3(conn, "admin-t", 0, record_batch(records(1)))[0]) == 0:
            assert time.monotonic() < deadline, "the deleted topic still takes writes"
            time.sleep(0.1)
        assert err == UNKNOWN_TOPIC_OR_PARTITION
        # Re-created under the same name, it starts empty.
        assert create_topics_v2(conn, "admin-t", 1)[0] == 0
        assert list_offsets_v1(conn, "admin-t", [0], -1) == {0: (0, 0)}


def test_metadata_auto_creates_with_num_partitions(broker_factory):
    broker = broker_factory(settings={"num.partitions": "4"})
    with Conn(broker.host, broker.port) as conn:
        # Kafka answers the request that creates the topic with an error, then the topic (Spate
        # answers with it at once): ask until it is there.
        deadline = time.monotonic() + 30
        while (found := metadata_v1(conn, ["auto-created"]))[1]["auto-created"][0] != 0:
            assert time.monotonic() < deadline, f"not auto-created: {found}"
            time.sleep(0.1)
        brokers, topics = found
    assert [(b[1], b[2]) for b in brokers] == [(broker.host, broker.port)]
    error, partitions = topics["auto-created"]
    assert error == 0
    assert sorted(partitions) == [0, 1, 2, 3]
    assert all(err == 0 and leader == brokers[0][0] for err, leader in partitions.values())


def test_topic_describe_configs_through_an_admin_client(broker):
    from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic

    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    admin.create_topics([NewTopic("configured", 2, 1, config={"retention.ms": "3600000"})])[
        "configured"
    ].result(30)
    resource = ConfigResource(ConfigResource.Type.TOPIC, "configured")
    configs = admin.describe_configs([resource])[resource].result(30)
    assert configs["retention.ms"].value == "3600000"
    assert not configs["retention.ms"].is_default
    assert configs["cleanup.policy"].value == "delete"
    assert configs["cleanup.policy"].is_default
    cluster = admin.list_topics(timeout=10)
    assert len(cluster.brokers) == 1 and len(cluster.topics["configured"].partitions) == 2


def run_spate(*args, timeout=10):
    return subprocess.run(
        [str(SPATE_BIN), *args], capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
    )


@pytest.mark.spate_only("the `spate start` command line and its data dir lock")
def test_second_start_on_a_data_dir_in_use_fails_at_once(broker):
    result = run_spate("start", "--data-dir", str(broker.data_dir), "--listen", "127.0.0.1:1")
    assert result.returncode != 0
    assert "in use by another spate process" in result.stderr
    assert broker.alive()


@pytest.mark.spate_only("the `spate start` command line")
def test_second_broker_on_a_listen_address_in_use_fails_at_once_and_writes_nothing(broker):
    # Each shard's listener sets SO_REUSEPORT; without a claim on the address a second broker
    # would share the first one's connections. Kafka refuses to start on a port in use.
    other_dir = IT_DIR / f"second-on-port-{broker.port}"
    shutil.rmtree(other_dir, ignore_errors=True)
    result = run_spate("start", "--data-dir", str(other_dir), "--listen", broker.bootstrap,
                       "--admin-listen", "none")
    assert result.returncode != 0, result.stdout
    assert f"cannot listen on {broker.bootstrap}: address already in use" in result.stderr, result.stderr
    assert not other_dir.exists(), "the refused broker created its data dir"
    # The first broker still owns every connection: a topic created through it is there.
    with Conn(broker.host, broker.port) as c:
        assert create_topics_v2(c, "still-mine", 1)[0] == 0
    for _ in range(10):
        with Conn(broker.host, broker.port) as c:
            _, found = metadata_v1(c, ["still-mine"])
        assert found["still-mine"][0] == 0
    # Another process (not a broker) on the address: refused the same way.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        taken = f"127.0.0.1:{s.getsockname()[1]}"
        result = run_spate("start", "--data-dir", str(other_dir), "--listen", taken, "--admin-listen", "none")
    assert result.returncode != 0 and f"cannot listen on {taken}: address already in use" in result.stderr, result.stderr
    assert not other_dir.exists()


@pytest.mark.spate_only("Spate's shards, panic hook and log lines")
def test_a_panic_in_a_shard_aborts_the_broker_after_logging_it_and_a_restart_recovers(broker_factory, monkeypatch):
    # Unwinding would end one shard's thread and leave the node looking ready; the panic
    # policy logs the panic (thread, location) and aborts the process, for a supervisor to
    # restart. The fault is injected into the last shard 3 s after it starts.
    monkeypatch.setenv("SPATE_FAULT_PANIC_AFTER_MS", "3000")
    b = broker_factory(name="panics", cores=2)
    with Conn(b.host, b.port) as c:
        assert create_topics_v2(c, "kept", 1)[0] == 0
        assert produce_v3(c, "kept", 0, record_batch([Rec(b"k", b"v")]), acks=-1) == (0, 0)
    b.proc.wait(30)
    assert b.proc.returncode == -signal.SIGABRT, f"exit {b.proc.returncode}\n{b.log_tail()}"
    b._reader.join(5)
    log = b.log_path.read_text(encoding="utf-8", errors="replace")
    assert re.search(r"ERROR panic: injected fault: SPATE_FAULT_PANIC_AFTER_MS; aborting the broker "
                     r"thread=\S+ location=broker/src/server.rs:\d+", log), b.log_tail()
    monkeypatch.delenv("SPATE_FAULT_PANIC_AFTER_MS")
    b.start()  # same data dir: recovery keeps the acknowledged record
    with Conn(b.host, b.port) as c:
        err, hw, data = fetch_v4(c, "kept", 0, 0)
        assert (err, hw) == (0, 1) and decode_batches(data)[0].records[0][2] == b"v"


@pytest.mark.spate_only("the `spate` command line")
def test_bad_command_lines_fail_with_a_reason():
    data_dir = IT_DIR / "cli-bad-args"
    for args, reason in [
        (["start", "--set", "no.such.setting=1"], "unknown setting 'no.such.setting'"),
        (["start", "--set", "num.partitions=zero"], "invalid value 'zero'"),
        (["start", "--cores", "0"], "--cores must be at least 1"),
        (["start", "--listen", "nonsense"], "invalid --listen"),
        (["start", "--bogus"], "unknown option '--bogus'"),
        (["frobnicate"], "unknown command 'frobnicate'"),
    ]:
        result = run_spate(*args, "--data-dir", str(data_dir)) if args[0] == "start" else run_spate(*args)
        assert result.returncode != 0, args
        assert reason in result.stderr, (args, result.stderr)
