#!/usr/bin/env python3
"""Tabulates bench/scripts/tls_cost.sh's runs: one row per run, the medians per system and
protocol, and a last line of ratios (TLS/plaintext per system, Spate/Kafka over TLS).

usage: tls_cost_report.py RUNS.jsonl OUT.json"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from pathlib import Path


def phase(path: str, side: str, cpu_s: float) -> dict:
    result = json.loads(Path(path).read_text())[side]
    gb = result["run_payload_bytes"] / 1e9
    return {"mb_per_s": result["mb_per_s"], "gb": gb, "errors": result["errors"],
            "cpu_s": cpu_s, "cpu_s_per_gb": cpu_s / gb if gb > 0 else float("nan")}


def load(runs_path: str) -> list[dict]:
    runs = []
    for line in Path(runs_path).read_text().splitlines():
        r = json.loads(line)
        runs.append({"round": r["round"], "system": r["system"], "protocol": r["protocol"],
                     "produce": phase(r["produce"], "produce", r["produce_cpu_s"]),
                     "fetch": phase(r["fetch"], "consume", r["fetch_cpu_s"])})
    return runs


METRICS = [("produce", "mb_per_s"), ("produce", "cpu_s_per_gb"), ("fetch", "mb_per_s"), ("fetch", "cpu_s_per_gb")]


def medians(runs: list[dict]) -> dict:
    out: dict = {}
    for key in sorted({(r["system"], r["protocol"]) for r in runs}):
        mine = [r for r in runs if (r["system"], r["protocol"]) == key]
        out[key] = {f"{p}_{m}": statistics.median(r[p][m] for r in mine) for p, m in METRICS}
    return out


def ratio(a, b) -> str:
    return f"{a / b:.3f}" if a is not None and b else "nan"


def main() -> int:
    runs_path, out_path = sys.argv[1], sys.argv[2]
    runs = load(runs_path)
    print(f"{'round':>5} {'system':<6} {'protocol':<9} {'produce MB/s':>12} {'CPU s/GB':>9} "
          f"{'fetch MB/s':>10} {'CPU s/GB':>9}")
    for r in runs:
        p, f = r["produce"], r["fetch"]
        print(f"{r['round']:>5} {r['system']:<6} {r['protocol']:<9} {p['mb_per_s']:>12.1f} "
              f"{p['cpu_s_per_gb']:>9.2f} {f['mb_per_s']:>10.1f} {f['cpu_s_per_gb']:>9.2f}")
    med = medians(runs)
    print("medians:")
    for (system, protocol), m in med.items():
        print(f"      {system:<6} {protocol:<9} {m['produce_mb_per_s']:>12.1f} {m['produce_cpu_s_per_gb']:>9.2f} "
              f"{m['fetch_mb_per_s']:>10.1f} {m['fetch_cpu_s_per_gb']:>9.2f}")
    ratios = {}
    for system in sorted({s for s, _ in med}):
        plain, tls = med.get((system, "PLAINTEXT")), med.get((system, "SSL"))
        for p, m in METRICS:
            key = f"{p}_{m}"
            ratios[f"{system}_tls_vs_plaintext_{key}"] = ratio(tls and tls[key], plain and plain[key])
    spate, kafka = med.get(("spate", "SSL")), med.get(("kafka", "SSL"))
    for p, m in METRICS:
        key = f"{p}_{m}"
        ratios[f"spate_vs_kafka_tls_{key}"] = ratio(spate and spate[key], kafka and kafka[key])
    root = Path(__file__).resolve().parents[2]
    commit = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip()
    record = {"benchmark": "tls-cost", "commit": commit, "cpus": os.cpu_count(),
              "loadavg_at_end": Path("/proc/loadavg").read_text().split()[:3],
              "runs": runs, "medians": {f"{s}-{p}": m for (s, p), m in med.items()}, "ratios": ratios}
    Path(out_path).parent.mkdir(parents=True, exist_ok=True)
    Path(out_path).write_text(json.dumps(record, indent=2))
    print(f"wrote {out_path}")
    print(" ".join(f"{k}={v}" for k, v in ratios.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
