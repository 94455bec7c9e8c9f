#!/usr/bin/env python3
"""Where a fixed-rate producer's tail goes, for broker variants of one binary (issue 21).

Each variant is a name, environment settings for the broker and extra `spate bench` arguments:
    NAME[:ENV=VALUE,ENV=VALUE[:CLIENT ARGS]]
e.g. `base`, `spin50:SPATE_SPIN_BEFORE_PARK_US=50`, `linger0::--linger-ms 0`. Each round runs
every variant once (the order rotating round by round): a fresh broker (`--cores 1`, pinned to
CPU 0, its admin endpoint on) on a fresh data dir, then `spate bench e2e` (pinned to CPU 1,
--broker-admin, so the broker's latency budget of the window comes back in its JSON).

Prints per run and as medians per variant: produce p50/p99/p99.9, end-to-end p99/p99.9, the
produce requests' round trip p99, the broker's produce handler, storage write and shard
wake-lag p99 (and p99.9 of the wake lag), the client's batch wait and in-flight wait p99
(`spate bench`'s split of a produce request), and the broker's CPU per GB (utime + stime of its
process over the run, /proc). The JSON of every run and the medians go to --json.

Usage: bench/scripts/latency_env_ab.py [--binary target/release/spate] [--rounds 2]
       [--rate 100MB/s] [--acks 1] [--duration-s 14] [--warmup-s 2] [--json OUT] VARIANT...
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))

HZ = os.sysconf("SC_CLK_TCK")


def parse_variant(spec):
    name, _, rest = spec.partition(":")
    env_part, _, client = rest.partition(":")
    env = dict(kv.split("=", 1) for kv in env_part.split(",") if kv)
    return {"name": name, "env": env, "client_args": client.split()}


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / HZ


def stage(result, path, name, key="p99_us"):
    for s in result.get("broker_stages", []):
        if s["path"] == path and s["stage"] == name:
            return s[key]
    return None


def summarize(result, cpu_s):
    p, c = result["produce"], result["consume"]
    gb = p["run_payload_bytes"] / 1e9
    return {
        "produce_mb_per_s": p["mb_per_s"],
        "produce_p50_us": p["latency_us"]["p50"],
        "produce_p99_us": p["latency_us"]["p99"],
        "produce_p999_us": p["latency_us"]["p99.9"],
        "e2e_p99_us": c["latency_us"]["p99"],
        "e2e_p999_us": c["latency_us"]["p99.9"],
        "batch_wait_p99_us": p["request_us"]["batch_wait"]["p99"],
        "in_flight_wait_p99_us": p["request_us"]["in_flight_wait"]["p99"],
        "round_trip_p99_us": p["request_us"]["round_trip"]["p99"],
        "handler_p99_us": stage(result, "produce", "handler"),
        "storage_write_p99_us": stage(result, "storage", "write"),
        "wake_lag_p99_us": stage(result, "shard", "wake_lag"),
        "wake_lag_p999_us": stage(result, "shard", "wake_lag", "p99.9_us"),
        "broker_cpu_s_per_gb": cpu_s / gb if gb else None,
    }


def run_variant(args, variant, port, admin_port):
    data = os.path.join(ROOT, "target", "bench", "latency-env-ab")
    shutil.rmtree(data, ignore_errors=True)
    os.makedirs(data)
    log = open(os.path.join(ROOT, "target", "bench", "latency-env-ab.log"), "a")
    env = {**os.environ, **variant["env"]}
    broker = subprocess.Popen(["taskset", "-c", "0", args.binary, "start", "--data-dir", data,
                               "--listen", f"127.0.0.1:{port}", "--admin-listen",
                               f"127.0.0.1:{admin_port}", "--cores", "1"],
                              stdout=subprocess.PIPE, stderr=log, text=True, env=env)
    try:
        for line in broker.stdout:
            if "ready" in line:
                break
        result_path = os.path.join(data, "result.json")
        cpu_before = cpu_seconds(broker.pid)
        run = subprocess.run([args.binary, "bench", "e2e", "--acks", args.acks, "--rate", args.rate,
                              "--brokers", f"127.0.0.1:{port}", "--topic", "lat", "--partitions", "8",
                              "--duration-s", str(args.duration_s), "--warmup-s", str(args.warmup_s),
                              "--client-cores", "1", "--broker-admin", f"127.0.0.1:{admin_port}",
                              "--quiet", "--json", result_path] + variant["client_args"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        cpu_s = cpu_seconds(broker.pid) - cpu_before
        if run.returncode != 0 or broker.poll() is not None:
            return {"failed": True, "client_rc": run.returncode, "broker_rc": broker.poll()}
        return {**summarize(json.load(open(result_path)), cpu_s), "load": os.getloadavg()[0]}
    finally:
        broker.terminate()
        broker.wait(30)


def main():
    from conftest import free_port

    ap = argparse.ArgumentParser()
    ap.add_argument("variants", nargs="+")
    ap.add_argument("--binary", default=os.path.join(ROOT, "target", "release", "spate"))
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--rate", default="100MB/s")
    ap.add_argument("--acks", default="1")
    ap.add_argument("--duration-s", type=int, default=14)
    ap.add_argument("--warmup-s", type=int, default=2)
    ap.add_argument("--json")
    args = ap.parse_args()
    variants = [parse_variant(v) for v in args.variants]
    runs = []
    for round_ in range(args.rounds):
        order = variants[round_ % len(variants):] + variants[:round_ % len(variants)]
        for variant in order:
            result = run_variant(args, variant, free_port(), free_port())
            runs.append({"round": round_ + 1, "variant": variant["name"], **result})
            print(json.dumps(runs[-1]), flush=True)
    medians = {}
    for variant in variants:
        ok = [r for r in runs if r["variant"] == variant["name"] and not r.get("failed")]
        keys = [k for k in (ok[0] if ok else {}) if k not in ("round", "variant")]
        medians[variant["name"]] = {
            k: statistics.median(r[k] for r in ok) for k in keys if all(r[k] is not None for r in ok)}
        medians[variant["name"]]["runs"] = len(ok)
    print(json.dumps(medians, indent=1))
    if args.json:
        record = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                  "machine": f"{os.cpu_count()} cores",
                  "settings": {"rate": args.rate, "acks": args.acks, "partitions": 8,
                               "duration_s": args.duration_s, "warmup_s": args.warmup_s,
                               "broker": "--cores 1 on CPU 0", "client": "CPU 1"},
                  "variants": variants, "runs": runs, "medians": medians}
        with open(args.json, "w") as f:
            json.dump(record, f, indent=1)


if __name__ == "__main__":
    main()
