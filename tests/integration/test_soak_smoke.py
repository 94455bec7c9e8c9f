"""`bench/scripts/soak.py` for one minute: the mixed workload (six producers over acks 0/1/all
and five codecs, a tail group whose members join and leave, a catch-up reader checking offsets
and acks=all sequences, topic churn, retention and a compacted topic) runs against the real
broker the script starts, stops by itself, leaves no process behind, and its summary shows
progress everywhere and no errors. Growth is not judged in so short a run (it is all warm-up);
the hour-long run in perf-reports does that."""

import json
import os
import subprocess
import sys
from pathlib import Path

from conftest import IT_DIR, ROOT, SPATE_BIN

import pytest

pytestmark = pytest.mark.spate_only("Spate's soak script and its data dir")

SOAK = ROOT / "bench" / "scripts" / "soak.py"


def test_soak_one_minute(tmp_path):
    out = tmp_path / "soak"
    work = IT_DIR / f"soak-{os.getpid()}"
    proc = subprocess.run(
        [sys.executable, str(SOAK), "--spate", str(SPATE_BIN), "--duration-s", "50",
         "--sample-s", "5", "--rate-mb", "1", "--retention-ms", "15000", "--segment-bytes", "1048576",
         "--rebalance-s", "8", "--producer-restart-s", "20", "--catch-up-pause-s", "3",
         "--churn-s", "1", "--churn-alive", "3", "--out", str(out), "--work-dir", str(work)],
        capture_output=True, text=True, timeout=150,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    result = json.loads(Path(f"{out}.json").read_text())
    summary = result["summary"]
    assert summary["verdict"] == "PASS", summary["failures"]
    assert summary["growth_judged"] is False
    totals = summary["totals"]
    for p in result["producers"]:
        assert totals["produced"].get(p["name"], 0) > 0, (p, totals)
    assert not any(totals["delivery_errors"].values()), totals
    assert not any(totals["consumer_errors"].values()), totals
    assert totals["check_failures"] == 0
    assert totals["consumed"]["tail"] > 0 and totals["consumed"]["catch_up"] > 0
    ev = totals["events"]
    assert ev["catch_up_passes"] >= 1
    assert ev["tail_joins"] >= 2 and ev["tail_leaves"] >= 1, ev  # members joined and left
    assert ev["topics_created"] >= 5 and ev["topics_deleted"] >= 1, ev
    assert ev["producer_instances"] >= 3, ev  # idempotent producers replaced (new producer ids)
    samples = result["samples"]
    assert len(samples) >= 8
    for s in samples:
        assert s["rss_bytes"] > 0 and s["fds"] > 0 and s["threads"] > 0 and s["disk_bytes"] > 0
    # Retention moved the log start of the delete-policy topic (15 s retention, 1 MiB segments).
    assert samples[-1]["log_start_offset"]["soak-main"] > 0, samples[-1]
    svg = Path(f"{out}.svg").read_text()
    assert svg.startswith("<svg") and svg.count("<polyline") >= 6
    lines = Path(f"{out}.jsonl").read_text().splitlines()
    assert len(lines) == len(samples)
    # Nothing left behind: the data dir of a passing run is removed, the broker is gone.
    assert not [d for d in work.glob("data-*") if d.is_dir()], list(work.iterdir())
