"""`spate bench` smoke test: a 10-second produce run and a short e2e run against a real broker,
asserting non-zero throughput and well-formed JSON (no performance target is asserted); and
compressed batches the bench builds, read back by a real client."""

import json
import re
import subprocess
import time

import pytest
from confluent_kafka import Consumer
from conftest import SPATE_BIN
from helpers import create_topic, kafka_tool

pytestmark = pytest.mark.spate_only("Spate's benchmark scripts")

PERCENTILES = ["p50", "p90", "p99", "p99.9", "p99.99", "max"]


def run_bench(tmp_path, broker, mode, *extra):
    out = tmp_path / f"{mode}.json"
    proc = subprocess.run(
        [str(SPATE_BIN), "bench", mode, "--brokers", broker.bootstrap, "--topic", f"smoke-{mode}",
         "--partitions", "4", "--json", str(out), *extra],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(out.read_text()), proc.stderr


def check_side(side):
    assert side["records"] > 0 and side["payload_bytes"] > 0 and side["mb_per_s"] > 0
    assert side["errors"] == 0
    latency = side["latency_us"]
    assert latency["count"] > 0
    values = [latency[p] for p in PERCENTILES]
    assert values == sorted(values), latency


def test_bench_produce_ten_seconds(broker, tmp_path):
    result, stderr = run_bench(tmp_path, broker, "produce", "--duration-s", "8", "--warmup-s", "2",
                               "--acks", "all", "--record-bytes", "512")
    assert result["mode"] == "produce"
    assert result["settings"]["acks"] == "all"
    check_side(result["produce"])
    # a progress line per second, then the summary
    assert stderr.count("MB/s  p50") >= 5, stderr
    assert "produce:" in stderr


def test_bench_e2e_fixed_rate_keyed(broker, tmp_path):
    admin = f"127.0.0.1:{broker.admin_port}"
    result, stderr = run_bench(tmp_path, broker, "e2e", "--duration-s", "3", "--warmup-s", "1",
                               "--rate", "2000rec/s", "--keys", "50", "--producers", "2",
                               "--quiet", "--broker-admin", admin)
    check_side(result["produce"])
    check_side(result["consume"])
    # The broker's latency budget over the measured window, beside the client's view.
    stages = {(s["path"], s["stage"]): s for s in result["broker_stages"]}
    assert stages[("produce", "handler")]["count"] > 0
    assert stages[("fetch", "handler")]["count"] > 0
    assert "broker latency budget over the window" in stderr
    assert "coordinated-omission corrected" in result["latency_from"]
    # at 2,000 records/s for 3 s: about 6,000 records each way
    assert 4000 <= result["produce"]["records"] <= 8000


def test_bench_rejects_bad_options(broker):
    proc = subprocess.run([str(SPATE_BIN), "bench", "produce", "--acks", "2"],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode != 0
    assert "--acks" in proc.stderr


@pytest.mark.parametrize("codec", ["gzip", "snappy", "lz4", "zstd"])
def test_bench_compressed_batches_decode_in_a_real_client(broker, tmp_path, codec):
    """Batches `spate bench produce --compression` builds are read back by librdkafka
    (confluent-kafka) record for record, and `spate bench consume --to-end` counts them."""
    topic = f"smoke-{codec}"
    produced, _ = run_bench(tmp_path, broker, "produce", "--topic", topic, "--compression", codec,
                            "--total-bytes", "2000000", "--record-bytes", "700", "--warmup-s", "0",
                            "--duration-s", "60", "--acks", "all", "--quiet")
    assert produced["settings"]["compression"] == codec
    side = produced["produce"]
    check_side(side)
    records = side["records"]
    assert records == -(-2_000_000 // 700)  # --total-bytes, whole records
    if codec in ("gzip", "zstd"):  # entropy coders shrink random letters; snappy and lz4 need repeats
        assert side["batch_bytes"] < side["payload_bytes"] * 0.8, side

    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": f"g-{codec}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    try:
        consumer.subscribe([topic])
        values = []
        deadline = time.monotonic() + 60
        while len(values) < records and time.monotonic() < deadline:
            for message in consumer.consume(num_messages=1000, timeout=1.0):
                assert message.error() is None, message.error()
                values.append(message.value())
    finally:
        consumer.close()
    assert len(values) == records
    for value in values:
        assert len(value) == 700
        assert value[8:].isalpha() and value[8:].isupper(), value[:40]
    # 8-byte little-endian send times, each distinct record's own
    assert len({v[:8] for v in values}) > 1

    consumed, _ = run_bench(tmp_path, broker, "consume", "--topic", topic, "--to-end",
                            "--warmup-s", "0", "--duration-s", "60", "--quiet")
    assert consumed["consume"]["records"] == records
    assert consumed["consume"]["payload_bytes"] == records * 700


def test_kafka_end_to_end_latency_tool_measures_spate(broker):
    """Kafka's EndToEndLatency (kafka-tools 4.3.1, the second end-to-end client of `spate bench
    compare`'s w3-e2e) runs against Spate as compare runs it and prints the average and the
    percentiles compare parses (`parse_end_to_end_latency`)."""
    topic = "java-e2e-smoke"
    create_topic(broker.bootstrap, topic, 1)
    out = kafka_tool("org.apache.kafka.tools.EndToEndLatency", "--bootstrap-server", broker.bootstrap,
                     "--topic", topic, "--num-records", "300", "--producer-acks", "1",
                     "--record-size", "1024", timeout=120).stdout
    avg = re.search(r"^Avg latency: ([0-9.]+) ms", out, re.M)
    percentiles = re.search(r"^Percentiles: 50th = (\d+), 99th = (\d+), 99.9th = (\d+)", out, re.M)
    assert avg and percentiles, out
    p50, p99, p999 = map(int, percentiles.groups())
    assert 0 <= p50 <= p99 <= p999 < 10_000, out
    assert 0 < float(avg.group(1)) < 10_000, out
