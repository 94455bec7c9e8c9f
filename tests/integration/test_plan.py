"""Capacity planning (issue 20): `spate bench profile --short` measures this machine and writes a
well-formed profile; `spate plan` on a fixed profile (bench/profiles/test-fixed.json, round
made-up numbers) gives the exact answers worked out by hand in bench/src/plan/model.rs; a sweep
writes its table and SVG; `spate plan --check` runs configurations the profile did not and
reports a finite prediction error per figure. No performance threshold is asserted: the
prediction errors measured are reported in perf-reports, not tested here."""

import json
import math
import shutil
import subprocess
import uuid

import pytest
from conftest import IT_DIR, ROOT, SPATE_BIN

pytestmark = pytest.mark.spate_only("Spate's `spate plan` and `spate bench profile` commands")

FIXED = ROOT / "bench" / "profiles" / "test-fixed.json"
CURVES = ["record_bytes", "partitions", "acks", "compression", "replication_factor",
          "consumer_groups", "latency"]


def spate(*args, timeout=60):
    return subprocess.run([str(SPATE_BIN), *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)


def finite(v):
    return isinstance(v, (int, float)) and math.isfinite(v)


@pytest.fixture(scope="module")
def measured(tmp_path_factory):
    """One short profile of this machine, shared by the tests that need a measured one."""
    out = tmp_path_factory.mktemp("profile") / "profile.json"
    work = IT_DIR / f"plan-{uuid.uuid4().hex[:8]}"
    work.mkdir(parents=True)
    try:
        proc = spate("bench", "profile", "--short", "--out", out, "--work-dir", work, timeout=300)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, proc.stderr


@pytest.mark.solo("measures this machine's throughput (and shares one profile run)")
def test_short_profile_is_complete(measured):
    path, stderr = measured
    profile = json.loads(path.read_text())
    assert profile["schema"] == "spate-profile/1"
    assert profile["broker"] == "spate" and profile["short"] is True
    assert profile["machine"]["cpus"] >= 1 and profile["machine"]["memory_gib"] > 0
    assert profile["measured"]["versions"]["spate"]
    assert finite(profile["disk"]["direct_write_mb_s"]) and profile["disk"]["direct_write_mb_s"] > 0
    assert 0 < profile["disk"]["fsync_p50_ms"] <= profile["disk"]["fsync_p99_ms"]
    assert profile["network"]["loopback_mb_s"] > 0
    for curve in CURVES:
        points = profile["curves"][curve]
        assert points, curve
        for p in points:
            assert finite(p["p99_ms"]), (curve, p)
            if curve != "latency":
                assert p["mb_per_s"] > 0 and p["cpu_s_per_gb"] > 0, (curve, p)
    assert [p["x"] for p in profile["curves"]["record_bytes"]] == [100, 1024, 16384]
    assert [p["x"] for p in profile["curves"]["consumer_groups"]] == [0, 1, 2]
    # zstd shrinks the bench's letter values; the ratio is batch bytes / payload bytes
    zstd = next(p for p in profile["curves"]["compression"] if p["x"] == "zstd")
    assert 0 < zstd["ratio"] < 1
    # RF 3 on a local 3-node cluster, or the profile says why it is RF 1 only
    rfs = [p["x"] for p in profile["curves"]["replication_factor"]]
    assert rfs == [1, 3] or profile["measured"]["notes"], profile["measured"]
    # every run's topic was deleted after it and gone from every node (the disk holds one run)
    # (the acks=1, no-compression, unlimited-latency and RF 1 points are copies of other runs)
    c = profile["curves"]
    runs = (len(c["record_bytes"]) + len(c["acks"]) - 1 + len(c["compression"]) - 1
            + len(c["partitions"]) + len(c["consumer_groups"]) + len(c["latency"]) - 1
            + len(c["replication_factor"]) - 1)
    assert profile["measured"]["runs"] >= runs == 13 + len(rfs) - 1
    assert profile["measured"]["topics_deleted"] == runs, profile["measured"]
    # each partition count on a fresh broker: the RSS of exactly those partitions
    assert [p["rss_partitions"] for p in profile["curves"]["partitions"]] == [1, 8, 64]
    # progress lines while it runs
    assert "profile [1/" in stderr and "profile: wrote" in stderr


@pytest.mark.solo("measures this machine's throughput (and shares one profile run)")
def test_plan_on_a_measured_profile(measured):
    path, _ = measured
    proc = spate("plan", "--profile", path, "--ingest", "200MB/s", "--json")
    assert proc.returncode == 0, proc.stderr
    plan = json.loads(proc.stdout)
    assert plan["brokers"] >= 3 and plan["cores_per_broker"] >= 1
    assert plan["limit"] in plan["brokers_by_resource"]
    assert finite(plan["p99_ms"])


def test_plan_arithmetic_on_the_fixed_profile():
    """The worked example of model.rs: known inputs, known outputs."""
    proc = spate("plan", "--profile", FIXED, "--ingest", "300MB/s", "--record-bytes", "1000",
                 "--partitions", "64", "--rf", "3", "--acks", "all", "--consumer-groups", "2",
                 "--retention", "1d", "--headroom", "30%", "--json")
    assert proc.returncode == 0, proc.stderr
    plan = json.loads(proc.stdout)
    assert plan["brokers_by_resource"] == {"cpu": 3, "disk bandwidth": 4, "disk capacity": 14,
                                           "network in": 3, "network out": 3,
                                           "replication factor": 3}
    assert plan["brokers"] == 14 and plan["limit"] == "disk capacity"
    assert plan["cores_per_broker"] == 1
    assert plan["cpu_cores_total"] == pytest.approx(1.65)
    capacity = 300e6 * 86_400 * 3 * (1 + 20 / 4096) + 64 * 3 * 2**30
    assert plan["disk_capacity_total_bytes"] == pytest.approx(capacity)
    assert plan["disk_write_per_broker_bytes_per_s"] == pytest.approx(945e6 / 13)
    assert plan["network_in_per_broker_bytes_per_s"] == pytest.approx(900e6 / 13)
    assert plan["network_out_per_broker_bytes_per_s"] == pytest.approx(1200e6 / 13)
    assert plan["p99_ms"] == pytest.approx(7.0)
    memory = 100 * 2**20 + 192 / 13 * 102.4 * 1024 + 900e6 / 13 * 30
    assert plan["memory_per_broker_bytes"] == pytest.approx(memory)
    terms = {t["name"]: t for t in plan["terms"]}
    assert terms["replica_cpu_per_gb"]["value"] == pytest.approx(1.0)
    assert "profile" in terms["replica_cpu_per_gb"]["source"]

    # the same load for people: a table naming the limit
    table = spate("plan", "--profile", FIXED, "--ingest", "300MB/s", "--record-bytes", "1000",
                  "--consumer-groups", "2", "--retention", "1d")
    assert table.returncode == 0, table.stderr
    assert "limit: disk capacity" in table.stdout and "expected p99" in table.stdout


def test_plan_sweep_writes_a_table_and_an_svg(tmp_path):
    svg = tmp_path / "sweep.svg"
    proc = spate("plan", "--profile", FIXED, "--sweep", "ingest=100MB/s..2GB/s", "--steps", "5",
                 "--svg", svg)
    assert proc.returncode == 0, proc.stderr
    rows = proc.stdout.splitlines()
    assert rows[0].split()[:2] == ["ingest", "brokers"]
    assert len(rows) == 1 + 5 + 1
    assert rows[-2].strip().startswith("2.00 GB/s")
    text = svg.read_text()
    assert text.startswith("<svg") and text.count("<circle") == 5


def test_plan_refuses_bad_input():
    assert "--ingest" in spate("plan", "--ingest", "fast").stderr
    assert "--acks" in spate("plan", "--ingest", "1MB/s", "--acks", "2").stderr
    kafka = spate("plan", "--ingest", "1MB/s", "--broker", "kafka")
    assert kafka.returncode != 0 and "Kafka profile" in kafka.stderr
    assert spate("plan", "--profile", "/nonexistent.json", "--ingest", "1MB/s").returncode != 0


@pytest.mark.solo("measures this machine's throughput (and shares one profile run)")
def test_plan_check_reports_an_error_per_figure(measured, tmp_path):
    path, _ = measured
    out = tmp_path / "check.json"
    proc = spate("plan", "--check", "--short", "--profile", path, "--out", out, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(out.read_text())
    assert len(report["checks"]) >= 1
    for check in report["checks"]:
        for figure in ["mb_per_s", "cpu_s_per_gb", "cpu_cores", "p99_ms"]:
            assert finite(check["predicted"][figure]), check
            assert finite(check["measured"][figure]), check
            assert finite(check["error_pct"][figure]), check
    assert "error" in proc.stdout.splitlines()[0]
    # RF 3 with acks=all on a local 3-node cluster, scored like the others, when the profile
    # measured its replicated point; else the check says it cannot
    profile = json.loads(path.read_text())
    replicated = [c for c in report["checks"] if c["config"]["replication_factor"] == 3]
    if [p["x"] for p in profile["curves"]["replication_factor"]] == [1, 3]:
        assert len(replicated) == 1 and replicated[0]["config"]["acks"] == "all", report
        assert replicated[0]["driven_mb_per_s"] > 0
        assert "RF 3 acks=all" in proc.stdout
    else:
        assert not replicated
        assert "cannot check RF=3" in report["skipped"][0]["why"]
        assert "not checked: cannot check RF=3" in proc.stdout


def stored_check(profile):
    """A stored check of the fixed profile: one RF 3 row with made-up measurements."""
    return {
        "measured": {"commit": "(made up)", "date": "(made up)"},
        "profile": {"broker": "spate", "measured": profile["measured"]},
        "short": True,
        "checks": [{
            "config": {"record_bytes": 10000, "partitions": 8, "fraction_of_predicted_peak": 0.6,
                       "replication_factor": 3, "acks": "all"},
            "driven_mb_per_s": 150 * 4.5 / 3.25 * 0.6,
            "measured": {"mb_per_s": 120.0, "cpu_s_per_gb": 3.9, "cpu_cores": 0.486,
                         "p99_ms": 10.0},
        }],
    }


def test_rescore_predicts_a_three_node_configuration_from_the_rf_curve(tmp_path):
    """The 3-node check's arithmetic (bench/src/plan/check.rs, known inputs): 10000 B on 8
    partitions at RF 3, acks=all costs 1.0 x 1.25 + 2 x 1.0 = 3.25 s/GB; the fixed profile's RF
    3 point (4.5 s/GB) ran 150 MB/s, so the peak is 150 x 4.5 / 3.25; at 60 % of it the
    cluster uses rate x 3.25 s/GB of CPU; p99 = 3 (at 0.6) + 3 (acks=all) + 2 (RF 3) ms."""
    profile = json.loads(FIXED.read_text())
    stored = tmp_path / "check.json"
    stored.write_text(json.dumps(stored_check(profile)))
    out = tmp_path / "rescored.json"
    proc = spate("plan", "--check", "--rescore", stored, "--profile", FIXED, "--out", out)
    assert proc.returncode == 0, proc.stderr
    row = json.loads(out.read_text())["checks"][0]
    rate = 150 * 4.5 / 3.25 * 0.6
    assert row["predicted"]["mb_per_s"] == pytest.approx(rate)
    assert row["predicted"]["cpu_s_per_gb"] == pytest.approx(3.25)
    assert row["predicted"]["cpu_cores"] == pytest.approx(rate / 1e3 * 3.25)
    assert row["predicted"]["p99_ms"] == pytest.approx(8.0)
    assert row["error_pct"]["cpu_s_per_gb"] == pytest.approx(20.0)
    assert row["error_pct"]["p99_ms"] == pytest.approx(25.0)
    assert "RF 3 acks=all" in proc.stdout and "re-score" in proc.stdout

    # the same profile without its replicated point cannot predict the RF 3 row: it says so
    profile["curves"]["replication_factor"] = profile["curves"]["replication_factor"][:1]
    rf1_only = tmp_path / "rf1-only.json"
    rf1_only.write_text(json.dumps(profile))
    proc = spate("plan", "--check", "--rescore", stored, "--profile", rf1_only)
    assert proc.returncode != 0
    assert "cannot check RF=3" in proc.stderr and "no replicated point" in proc.stderr
