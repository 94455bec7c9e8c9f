"""`spate bench` smoke test: a 10-second produce run and a short e2e run against a real broker,
asserting non-zero throughput and well-formed JSON (no performance target is asserted)."""

import json
import subprocess

from conftest import SPATE_BIN

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
    result, _ = run_bench(tmp_path, broker, "e2e", "--duration-s", "3", "--warmup-s", "1",
                          "--rate", "2000rec/s", "--keys", "50", "--producers", "2", "--quiet")
    check_side(result["produce"])
    check_side(result["consume"])
    assert "coordinated-omission corrected" in result["latency_from"]
    # at 2,000 records/s for 3 s: about 6,000 records each way
    assert 4000 <= result["produce"]["records"] <= 8000


def test_bench_rejects_bad_options(broker):
    proc = subprocess.run([str(SPATE_BIN), "bench", "produce", "--acks", "2"],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode != 0
    assert "--acks" in proc.stderr
