"""The admin endpoint: /metrics (Prometheus text format, parsed with prometheus_client's own
parser) moves with real traffic, /v1/status answers JSON, and bad HTTP is refused."""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request
import time
import uuid

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

import kafka_wire as w
from conftest import SPATE_BIN
from helpers import create_topic
from metrics_scrape import get, scrape

pytestmark = pytest.mark.spate_only("Spate's admin endpoint: Kafka exposes JMX instead")

FAMILIES = {
    "spate_requests": "counter",
    "spate_request_latency_seconds": "histogram",
    "spate_request_errors": "counter",
    "spate_topic_bytes_in": "counter",
    "spate_topic_bytes_out": "counter",
    "spate_partitions": "gauge",
    "spate_under_replicated_partitions": "gauge",
    "spate_log_size_bytes": "gauge",
    "spate_log_start_offset": "gauge",
    "spate_log_end_offset": "gauge",
    "spate_log_cache_bytes": "gauge",
    "spate_log_cache_bytes_max": "gauge",
    "spate_consumer_group_committed_offset": "gauge",
    "spate_consumer_group_lag": "gauge",
    "spate_shard_busy_seconds": "counter",
    "spate_shard_busy_with_io_poll_seconds": "counter",
    "spate_shard_tasks_executed": "counter",
    "spate_shard_file_write_bytes": "counter",
    "spate_shard_pending_write_bytes": "gauge",
    "spate_shard_unwritten_bytes": "gauge",
    "spate_shard_produce_waiting_for_room": "gauge",
    "spate_shard_read_ahead_streams": "gauge",
    "spate_process_uptime_seconds": "gauge",
    "spate_process_resident_memory_bytes": "gauge",
    "spate_stage_latency_seconds": "histogram",
}


def produce(bootstrap, topic, n, value_bytes=100):
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5})
    for i in range(n):
        p.produce(topic, key=str(i).encode(), value=b"v" * value_bytes, partition=i % 2)
    assert p.flush(30) == 0


def test_metrics_follow_traffic(broker):
    before = scrape(broker)
    for name, kind in FAMILIES.items():
        assert name in before.families, f"missing family {name}"
        assert before.families[name].type == kind, (name, before.families[name].type)
    assert before.value("spate_under_replicated_partitions") == 0
    assert len(before.samples("spate_shard_busy_seconds_total")) == broker.cores

    topic, group, n = "metrics-" + uuid.uuid4().hex[:6], "metrics-group", 200
    create_topic(broker.bootstrap, topic, 2)
    produce(broker.bootstrap, topic, n)
    after_produce = scrape(broker)
    produced = after_produce.value("spate_requests_total", api="Produce")
    assert produced >= 1 > before.value("spate_requests_total", api="Produce")
    assert after_produce.value("spate_request_latency_seconds_count", api="Produce") == produced
    buckets = after_produce.samples("spate_request_latency_seconds_bucket", api="Produce")
    counts = [s.value for s in buckets]
    assert counts == sorted(counts) and buckets[-1].labels["le"] == "+Inf" and counts[-1] == produced
    assert after_produce.value("spate_topic_bytes_in_total", topic=topic) >= n * 100
    assert after_produce.value("spate_topic_bytes_out_total", topic=topic) == 0
    ends = {p: after_produce.value("spate_log_end_offset", topic=topic, partition=str(p)) for p in (0, 1)}
    assert ends == {0: n / 2, 1: n / 2}
    for p in (0, 1):
        assert after_produce.value("spate_log_size_bytes", topic=topic, partition=str(p)) >= n / 2 * 100
        assert after_produce.value("spate_log_start_offset", topic=topic, partition=str(p)) == 0
    assert after_produce.total("spate_partitions") >= 2
    assert after_produce.total("spate_shard_file_write_bytes_total") > 0

    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group,
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    try:
        consumer.subscribe([topic])
        seen = 0
        while seen < n:
            msg = consumer.poll(30)
            assert msg is not None, f"consumed only {seen} of {n}"
            assert msg.error() is None, msg.error()
            seen += 1
        consumer.commit(offsets=[TopicPartition(topic, 0, n // 2), TopicPartition(topic, 1, n // 4)],
                        asynchronous=False)
    finally:
        consumer.close()
    after_consume = scrape(broker)
    assert after_consume.value("spate_topic_bytes_out_total", topic=topic) >= n * 100
    assert after_consume.value("spate_requests_total", api="Fetch") >= 1
    assert after_consume.value("spate_requests_total", api="OffsetCommit") >= 1
    assert after_consume.value("spate_consumer_group_committed_offset", group=group, topic=topic,
                               partition="1") == n // 4
    lag = {p: after_consume.value("spate_consumer_group_lag", default=None, group=group, topic=topic,
                                  partition=str(p)) for p in (0, 1)}
    assert lag == {0: 0, 1: n / 2 - n // 4}

    produce(broker.bootstrap, topic, 10)
    assert scrape(broker).value("spate_consumer_group_lag", group=group, topic=topic, partition="0") == 5


def test_the_shard_cache_bound_goes_to_the_partitions_being_written(broker_factory):
    """One shard, 40 partitions, a 16 MiB shard bound: once one partition is written to, the
    maintenance tick gives it the 4 MiB per-partition bound out of what the 39 idle ones' 64 KiB
    floors leave (not 16 MiB / 40), the bounds add up to at most the shard's, what it caches
    stays within its bound (from its first append on, not from the next maintenance tick), a
    consumer reads every record back, and the topic the consumer's
    group creates (`__consumer_offsets`) does not take the busy partition's bound."""
    mib, kib = 1 << 20, 1 << 10
    broker = broker_factory(settings={"log.cache.bytes.per.shard": str(16 * mib),
                                      "log.cache.bytes.per.partition": str(4 * mib)}, cores=1)
    topic, partitions = "cache-share-" + uuid.uuid4().hex[:6], 40
    create_topic(broker.bootstrap, topic, partitions)
    p = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all", "linger.ms": 5})

    def produce_to_first(count):
        for _ in range(count):
            p.produce(topic, value=b"c" * 1000, partition=0)
        assert p.flush(30) == 0

    def bounds():
        page = scrape(broker)
        return page, {q: page.value("spate_log_cache_bytes_max", default=None, topic=topic, partition=str(q))
                      for q in range(partitions)}

    produce_to_first(10)
    busy = 4 * mib
    # The first append to an idle partition re-shares at once, not at the next tick (1 s).
    page, got = bounds()
    assert got[0] == busy, got
    assert all(got[q] == 64 * kib for q in range(1, partitions)), got
    assert sum(got.values()) <= 16 * mib
    produce_to_first(300)
    # Nobody reads it from memory, so it keeps only its write backlog (issue 21; what it keeps
    # for readers: test_tail_cache_readers.py), and never more than its bound.
    cached = scrape(broker).value("spate_log_cache_bytes", topic=topic, partition="0")
    assert cached <= busy, cached

    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "cache-share",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    try:
        consumer.assign([TopicPartition(topic, 0, 0)])
        seen = 0
        while seen < 310:
            msg = consumer.poll(30)
            assert msg is not None, f"consumed only {seen} of 310"
            assert msg.error() is None, msg.error()
            assert msg.offset() == seen and msg.value() == b"c" * 1000
            seen += 1
        # The commit needs the group's coordinator, so `__consumer_offsets` exists after it.
        consumer.commit(offsets=[TopicPartition(topic, 0, seen)], asynchronous=False)
    finally:
        consumer.close()
    after = scrape(broker)
    deadline = time.time() + 10
    while after.total("spate_partitions") < partitions + 1 and time.time() < deadline:
        time.sleep(0.2)
        after = scrape(broker)
    assert after.total("spate_partitions") >= partitions + 1, "the group's offsets topic exists"
    assert after.value("spate_log_cache_bytes_max", topic=topic, partition="0") == busy


def test_error_codes_are_counted_by_api_and_name(broker):
    topic = "errors-" + uuid.uuid4().hex[:6]
    create_topic(broker.bootstrap, topic, 1)
    with w.Conn(broker.host, broker.port) as c:
        for _ in range(3):
            err, _ = w.produce_v3(c, topic, 7, w.record_batch([w.Rec(b"k", b"v")]))
            assert err == 3  # UNKNOWN_TOPIC_OR_PARTITION
    s = scrape(broker)
    assert s.value("spate_request_errors_total", api="Produce", error="UNKNOWN_TOPIC_OR_PARTITION") == 3
    assert not s.samples("spate_request_errors_total", error="NONE")


def test_the_latency_budget_times_every_stage_of_real_produce_and_fetch_requests(broker):
    """librdkafka produces with acks=all and consumes: /v1/stages and /metrics time each stage
    of those requests (one record per request and stage on the connection path, one per
    partition and request on the owner shard), and a request's stages fit inside its handler."""
    topic = "stages-" + uuid.uuid4().hex[:6]
    create_topic(broker.bootstrap, topic, 2)
    before = scrape(broker).value("spate_requests_total", api="Produce") or 0
    produce(broker.bootstrap, topic, 200)
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "g-" + topic,
                  "auto.offset.reset": "earliest", "fetch.wait.max.ms": 50})
    c.assign([TopicPartition(topic, p, 0) for p in (0, 1)])
    got, deadline = 0, time.monotonic() + 30
    while got < 200 and time.monotonic() < deadline:
        got += sum(1 for m in c.consume(200, 0.5) if not m.error())
    c.close()
    assert got == 200
    produces = scrape(broker).value("spate_requests_total", api="Produce") - before
    assert produces >= 1

    status, ctype, body = get(broker.admin_url + "/v1/stages")
    assert status == 200 and ctype == "application/json"
    stages = {(s["path"], s["stage"]): s for s in json.loads(body)["stages"]}
    for stage in ["frame_read", "admission", "handler", "decode", "route", "append",
                  "acknowledged", "return", "encode", "reply_order", "reply_written"]:
        assert stages[("produce", stage)]["count"] >= produces, stage
    for stage in ["frame_read", "handler", "decode", "read", "encode", "reply_written"]:
        assert stages[("fetch", stage)]["count"] >= 1, stage
    # acks=all: every acknowledged produce waited for a write and its fdatasync.
    assert stages[("storage", "write")]["count"] >= 1
    assert stages[("storage", "fdatasync")]["count"] >= 1
    # Every shard's wake-lag probe has woken (every 10 ms) since the broker started.
    assert stages[("shard", "wake_lag")]["count"] >= broker.cores
    for s in stages.values():
        assert 0 < s["p50_ns"] <= s["p99_ns"] <= s["p999_ns"] <= s["max_ns"], s
        assert sum(n for _, n in s["buckets"]) == s["count"], s
    handler = stages[("produce", "handler")]
    assert stages[("produce", "append")]["max_ns"] <= handler["max_ns"] * 1.02

    s = scrape(broker)
    labels = {"path": "produce", "stage": "acknowledged"}
    count = s.value("spate_stage_latency_seconds_count", **labels)
    assert count >= produces
    assert s.value("spate_stage_latency_seconds_bucket", le="+Inf", **labels) == count
    assert s.value("spate_stage_latency_seconds_bucket", le="10", **labels) == count


def test_status_is_json(broker):
    topic = "status-" + uuid.uuid4().hex[:6]
    create_topic(broker.bootstrap, topic, 3)
    status, ctype, body = get(broker.admin_url + "/v1/status")
    assert status == 200 and ctype == "application/json"
    s = json.loads(body)
    assert s["ready"] is True
    assert s["node_id"] == 1 and s["shards"] == broker.cores
    assert s["listeners"] == {"kafka": broker.bootstrap, "admin": f"127.0.0.1:{broker.admin_port}"}
    assert topic in s["topics"] and s["partitions"] >= 3
    assert sum(s["partitions_per_shard"]) == s["partitions"]
    assert s["data_dir"] == str(broker.data_dir.resolve())
    assert s["uptime_s"] > 0 and s["version"]


def test_bad_http_is_refused(broker):
    for path, method, code in [("/nope", "GET", 404), ("/metrics", "POST", 405), ("/v1/status", "DELETE", 405)]:
        req = urllib.request.Request(broker.admin_url + path, method=method)
        try:
            urllib.request.urlopen(req, timeout=10)
            raise AssertionError(f"{method} {path} answered 200")
        except urllib.error.HTTPError as e:
            assert e.code == code, (method, path, e.code)
    for garbage in [b"garbage\r\n\r\n", b"GET /metrics HTTP/9\r\n\r\n", b"GET /metrics HTTP/1.1\r\nbad header\r\n\r\n"]:
        with socket.create_connection((broker.host, broker.admin_port), timeout=10) as s:
            s.sendall(garbage)
            assert s.recv(100) == b"", garbage  # closed without an answer
    assert get(broker.admin_url + "/metrics")[0] == 200  # still serving
