"""The `spate` command-line client (topic, produce, consume, group, cluster) against a real
broker, and its interoperability with confluent-kafka (librdkafka) and kcat."""

from __future__ import annotations

import json
import shutil
import subprocess
import time

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from conftest import SPATE_BIN

pytestmark = pytest.mark.spate_only("the `spate` client commands")

# Groups form at once (Kafka waits 3 s for more members of a new group by default).
GROUP_SETTINGS = {"group.initial.rebalance.delay.ms": "0"}


def spate(broker, *args, input=None, timeout=60, check=True):
    """Runs `spate ARGS --brokers B`; returns the CompletedProcess (stdout/stderr as text)."""
    argv = [str(SPATE_BIN), *map(str, args)]
    if broker is not None:
        argv += ["--brokers", broker.bootstrap]
    p = subprocess.run(argv, input=input, capture_output=True, text=True, timeout=timeout,
                       stdin=None if input is not None else subprocess.DEVNULL)
    if check:
        assert p.returncode == 0, f"{argv} exited {p.returncode}: {p.stderr}"
    return p


def spate_json(broker, *args, **kw):
    return json.loads(spate(broker, *args, "--json", **kw).stdout)


def one_line_error(p, *expected):
    assert p.returncode != 0, p.stdout
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1, p.stderr
    assert lines[0].startswith("spate: "), lines[0]
    for text in expected:
        assert text in lines[0], lines[0]


def test_topic_produce_consume_round_trip(broker):
    p = spate(broker, "topic", "create", "cli-t", "--partitions", "3")
    assert "cli-t" in p.stdout
    lines = [f"line {i} " + "x" * (i % 50) for i in range(1000)]
    p = spate(broker, "produce", "cli-t", input="\n".join(lines) + "\n")
    assert "produced 1000 records" in p.stderr

    p = spate(broker, "consume", "cli-t", "--from-beginning", "--max", "1000", timeout=120)
    assert sorted(p.stdout.splitlines()) == sorted(lines)

    described = spate_json(broker, "topic", "describe", "cli-t")
    assert [q["partition"] for q in described["partitions"]] == [0, 1, 2]
    assert all(q["leader"] >= 0 and q["replicas"] == [q["leader"]] for q in described["partitions"])
    assert sum(q["log_end_offset"] for q in described["partitions"]) == 1000
    text = spate(broker, "topic", "describe", "cli-t").stdout
    assert "PARTITION" in text and "LEADER" in text and len(text.splitlines()) == 3 + 3

    listed = spate_json(broker, "topic", "list")
    assert {"name": "cli-t", "partitions": 3} == {
        k: v for t in listed if t["name"] == "cli-t" for k, v in t.items() if k in ("name", "partitions")}

    # Keyed records go where the Java client puts them; --partition pins.
    spate(broker, "produce", "cli-t", "--partition", "2", "--compression", "gzip", input="pinned\n")
    p = spate(broker, "consume", "cli-t", "--offset", "0", "--partition", "2", "--timeout-ms", "1500",
              "--format", "%p %s\\n")
    assert "2 pinned" in p.stdout.splitlines()

    # acks=0: nothing to wait for, still there.
    spate(broker, "produce", "cli-t", "--partition", "1", "--acks", "0", input="fire and forget\n")
    p = spate(broker, "consume", "cli-t", "--partition", "1", "--offset", "0", "--timeout-ms", "2000")
    assert "fire and forget" in p.stdout.splitlines()

    # A position past the end moves to the end (as after retention), said on stderr.
    p = spate(broker, "consume", "cli-t", "--offset", "100000", "--partition", "2",
              "--timeout-ms", "1000")
    assert "out of range" in p.stderr and p.stdout == ""

    spate(broker, "topic", "delete", "cli-t")
    assert "cli-t" not in [t["name"] for t in spate_json(broker, "topic", "list")]


def test_errors_are_one_line_and_non_zero(broker):
    assert "spate consume TOPIC" in spate(None, "consume", "--help").stdout
    one_line_error(spate(broker, "topic", "create", "bad name!", check=False),
                   "bad name!", "invalid topic name")
    one_line_error(spate(broker, "topic", "create", "x" * 250, check=False), "invalid topic name")
    one_line_error(spate(broker, "produce", "..", input="a\n", check=False), "invalid topic name")
    one_line_error(spate(broker, "topic", "describe", "no-such-topic", check=False),
                   "topic 'no-such-topic': UNKNOWN_TOPIC_OR_PARTITION")
    spate(broker, "topic", "create", "dup")
    one_line_error(spate(broker, "topic", "create", "dup", check=False),
                   "topic 'dup': TOPIC_ALREADY_EXISTS")
    one_line_error(spate(broker, "consume", "dup", "--format", "%x", check=False), "--format")
    one_line_error(spate(broker, "produce", "dup", "--compression", "brotli", input="a\n",
                         check=False), "unknown codec 'brotli'")
    # Nothing listens on a port just freed: refused at once, reported in one line.
    started = time.monotonic()
    p = subprocess.run([str(SPATE_BIN), "topic", "list", "--brokers", f"127.0.0.1:{_closed_port()}"],
                       capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    one_line_error(p, "cannot reach a broker")
    assert time.monotonic() - started < 20


def _closed_port():
    from conftest import free_port
    return free_port()


def test_cli_records_read_by_confluent_and_back(broker):
    spate(broker, "topic", "create", "interop", "--partitions", "2")
    lines = [f"k{i}:v{i}" for i in range(100)]
    spate(broker, "produce", "interop", "--key-separator", ":", "--header", "origin=spate",
          "--header", "n=1", "--compression", "lz4", input="\n".join(lines[:30]) + "\n")
    spate(broker, "produce", "interop", "--key-separator", ":", "--header", "origin=spate",
          "--header", "n=1", "--compression", "snappy", input="\n".join(lines[30:60]) + "\n")
    spate(broker, "produce", "interop", "--key-separator", ":", "--header", "origin=spate",
          "--header", "n=1", "--compression", "zstd", input="\n".join(lines[60:]) + "\n")
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "unused",
                  "enable.auto.commit": False})
    c.assign([TopicPartition("interop", p, 0) for p in (0, 1)])
    got = {}
    deadline = time.monotonic() + 60
    while len(got) < 100 and time.monotonic() < deadline:
        m = c.poll(0.5)
        if m is None:
            continue
        assert m.error() is None, m.error()
        got[m.key().decode()] = (m.value().decode(), m.headers(), m.partition())
    c.close()
    assert len(got) == 100
    for i in range(100):
        value, headers, partition = got[f"k{i}"]
        assert value == f"v{i}"
        assert headers == [("origin", b"spate"), ("n", b"1")]
    # Keys are placed as the Java client and librdkafka's murmur2_random place them.
    spate(broker, "topic", "create", "interop-placement", "--partitions", "4")
    p = Producer({"bootstrap.servers": broker.bootstrap, "partitioner": "murmur2_random"})
    for i in range(20):
        p.produce("interop-placement", key=f"k{i}", value=b"v")
    assert p.flush(30) == 0
    spate(broker, "produce", "interop-placement", "--key-separator", ":",
          input="".join(f"k{i}:w\n" for i in range(20)))
    p = spate(broker, "consume", "interop-placement", "--from-beginning", "--max", "40",
              "--format", "%k %p %s\\n")
    placed = {}
    for line in p.stdout.splitlines():
        key, partition, value = line.split()
        placed.setdefault(key, set()).add(partition)
    assert len(placed) == 20 and all(len(parts) == 1 for parts in placed.values()), placed
    assert len({next(iter(parts)) for parts in placed.values()}) > 1  # spread, not all on one

    # confluent-kafka and kcat write; `spate consume --format` reads.
    p = Producer({"bootstrap.servers": broker.bootstrap, "compression.type": "snappy"})
    for i in range(30):
        p.produce("from-clients", key=f"ck{i}", value=f"cv{i}", headers=[("h", f"{i}".encode())],
                  timestamp=1_700_000_000_000 + i)
    assert p.flush(30) == 0
    kcat = shutil.which("kcat")
    if kcat is None:
        pytest.fail("kcat not installed: run ci/install-deps")
    r = subprocess.run([kcat, "-b", broker.bootstrap, "-t", "from-clients", "-P", "-K:", "-H", "via=kcat"],
                       input="kk:kv\n", capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    p = spate(broker, "consume", "from-clients", "--from-beginning", "--max", "31",
              "--format", "%k|%s|%h|%T|%p|%o\\n")
    rows = [line.split("|") for line in p.stdout.splitlines()]
    assert len(rows) == 31
    from_confluent = {r[0]: r for r in rows if r[0].startswith("ck")}
    assert len(from_confluent) == 30
    for i in range(30):
        key, value, headers, ts, partition, offset = from_confluent[f"ck{i}"]
        assert (value, headers, int(ts)) == (f"cv{i}", f"h={i}", 1_700_000_000_000 + i)
    assert [r for r in rows if r[0] == "kk"][0][1:3] == ["kv", "via=kcat"]
    offsets = sorted(int(r[5]) for r in rows)
    assert offsets == list(range(31))  # one partition (auto-created with num.partitions=1)
    # zstd both ways.
    p = Producer({"bootstrap.servers": broker.bootstrap, "compression.type": "zstd"})
    for i in range(10):
        p.produce("zstd-in", value=f"z{i}" * 50)
    assert p.flush(30) == 0
    p = spate(broker, "consume", "zstd-in", "--from-beginning", "--max", "10")
    assert p.stdout.splitlines() == [f"z{i}" * 50 for i in range(10)]
    # --json: one object per line.
    p = spate(broker, "consume", "from-clients", "--from-beginning", "--max", "2", "--json")
    objects = [json.loads(line) for line in p.stdout.splitlines()]
    assert objects[0]["key"] == "ck0" and objects[0]["headers"] == {"h": "0"}
    # --from-time: ListOffsets by timestamp.
    p = spate(broker, "consume", "from-clients", "--from-time", "2023-11-14T22:13:20.025Z",
              "--max", "1", "--format", "%k")
    assert p.stdout == "ck25"


def test_group_consume_describe_reset_delete(broker_factory):
    broker = broker_factory(GROUP_SETTINGS)
    spate(broker, "topic", "create", "gt", "--partitions", "3")
    spate(broker, "produce", "gt", "--key-separator", ":",
          input="".join(f"key{i}:value{i}\n" for i in range(300)))
    ends = {q["partition"]: q["log_end_offset"] for q in spate_json(broker, "topic", "describe", "gt")["partitions"]}
    assert sum(ends.values()) == 300 and all(ends.values())

    p = spate(broker, "consume", "gt", "--group", "cli-g", "--from-beginning", "--max", "300", timeout=120)
    assert sorted(p.stdout.splitlines()) == sorted(f"value{i}" for i in range(300))

    described = spate_json(broker, "group", "describe", "cli-g")
    assert described["state"] == "Empty" and described["members"] == []
    offsets = {o["partition"]: o for o in described["offsets"] if o["topic"] == "gt"}
    assert sorted(offsets) == [0, 1, 2]
    for partition, o in offsets.items():
        assert o["committed_offset"] == ends[partition] == o["log_end_offset"]
        assert o["lag"] == 0

    assert "cli-g" in [g["group"] for g in spate_json(broker, "group", "list")]

    plan = spate_json(broker, "group", "reset-offsets", "cli-g", "--topic", "gt", "--to-earliest")
    assert not plan["executed"] and all(q["new_offset"] == 0 for q in plan["partitions"])
    assert spate_json(broker, "group", "describe", "cli-g")["offsets"][0]["lag"] == 0  # dry run
    spate(broker, "group", "reset-offsets", "cli-g", "--topic", "gt", "--to-earliest", "--execute")
    lags = [o["lag"] for o in spate_json(broker, "group", "describe", "cli-g")["offsets"]]
    assert sorted(lags) == sorted(ends.values())

    p = spate(broker, "consume", "gt", "--group", "cli-g", "--timeout-ms", "3000", timeout=120)
    assert sorted(p.stdout.splitlines()) == sorted(f"value{i}" for i in range(300))
    assert all(o["lag"] == 0 for o in spate_json(broker, "group", "describe", "cli-g")["offsets"])

    spate(broker, "group", "reset-offsets", "cli-g", "--topic", "gt", "--to-offset", "5", "--execute")
    committed = {o["partition"]: o["committed_offset"] for o in spate_json(broker, "group", "describe", "cli-g")["offsets"]}
    assert committed == {p: min(5, end) for p, end in ends.items()}

    spate(broker, "group", "delete", "cli-g")
    assert "cli-g" not in [g["group"] for g in spate_json(broker, "group", "list")]
    one_line_error(spate(broker, "group", "delete", "cli-g", check=False), "group 'cli-g'")


def test_group_shared_with_a_confluent_consumer(broker_factory):
    broker = broker_factory(GROUP_SETTINGS)
    spate(broker, "topic", "create", "shared", "--partitions", "4")
    member = subprocess.Popen(
        [str(SPATE_BIN), "consume", "shared", "--group", "mixed", "--from-beginning",
         "--brokers", broker.bootstrap],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    c = None
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            p = spate(broker, "group", "describe", "mixed", "--json", check=False)
            if p.returncode == 0 and json.loads(p.stdout)["state"] == "Stable":
                break
            time.sleep(0.2)
        c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "mixed",
                      "partition.assignment.strategy": "range", "auto.offset.reset": "earliest",
                      "session.timeout.ms": 10000, "heartbeat.interval.ms": 1000})
        c.subscribe(["shared"])
        deadline = time.monotonic() + 60
        members = []
        while time.monotonic() < deadline:
            c.poll(0.2)
            d = spate_json(broker, "group", "describe", "mixed")
            members = d["members"]
            if d["state"] == "Stable" and len(members) == 2 and c.assignment():
                break
        assert len(members) == 2, members
        shares = [sorted(m["assignment"].get("shared", [])) for m in members]
        assert all(len(s) == 2 for s in shares), shares  # range: 4 partitions, 2 members
        assert sorted(shares[0] + shares[1]) == [0, 1, 2, 3]
        assert sorted(tp.partition for tp in c.assignment()) in shares
        assert d["protocol"] == "range"
        assert "spate-cli" in [m["client_id"] for m in members]
        # Offsets of an active group are not reset.
        one_line_error(spate(broker, "group", "reset-offsets", "mixed", "--topic", "shared",
                             "--to-earliest", "--execute", check=False), "stop its members")
    finally:
        if c is not None:
            c.close()
        member.terminate()
        out, err = member.communicate(timeout=30)
    assert member.returncode == 0, err
    assert "consumed" in err


def test_alter_config_and_cluster_info(broker):
    spate(broker, "topic", "create", "cfg", "--config", "retention.ms=600000")
    assert spate_json(broker, "topic", "describe", "cfg")["configs"] == {"retention.ms": "600000"}
    spate(broker, "topic", "alter-config", "cfg", "--set", "retention.ms=12345",
          "--set", "segment.bytes=1048576")
    configs = spate_json(broker, "topic", "describe", "cfg")["configs"]
    assert configs == {"retention.ms": "12345", "segment.bytes": "1048576"}
    assert "retention.ms=12345" in spate(broker, "topic", "describe", "cfg").stdout
    spate(broker, "topic", "alter-config", "cfg", "--delete", "retention.ms")
    assert spate_json(broker, "topic", "describe", "cfg")["configs"] == {"segment.bytes": "1048576"}
    one_line_error(spate(broker, "topic", "alter-config", "cfg", "--set", "retention.ms=soon",
                         check=False), "topic 'cfg': INVALID_CONFIG")

    info = spate_json(broker, "cluster", "info")
    assert info["cluster_id"]
    assert [(b["host"], b["port"]) for b in info["brokers"]] == [("127.0.0.1", broker.port)]
    assert info["controller"] == info["brokers"][0]["id"]
    assert info["topics"] == 1
    # One node: every partition has its one replica in sync and a leader.
    assert info["under_replicated_partitions"] == 0 and info["offline_partitions"] == 0
    assert info["partitions"] >= 1
    text = spate(broker, "cluster", "info").stdout
    assert f"127.0.0.1:{broker.port}" in text and info["cluster_id"] in text
