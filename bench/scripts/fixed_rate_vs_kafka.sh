#!/bin/bash
# Spate against Apache Kafka 4.3.1 (bench/peers/kafka) at a fixed produce rate, acks=1, the same
# client (`spate bench produce`, no consumer on the client's core), linger 5 ms and 0; broker on
# CPU 0, client on CPU 1; ROUNDS rounds (default 2), each system on a fresh data dir per round.
#   RATE=75MB/s ROUNDS=2 OUT=target/bench/fixed-rate-vs-kafka bench/scripts/fixed_rate_vs_kafka.sh
# Prints one line per run: MB/s, produce p50/p99/p99.9 (µs, from the intended send time) and the
# client's split (round trip, batch wait, in-flight wait p99); the JSON of each run stays in OUT.
set -u
cd "$(dirname "$0")/../.."
S="${SPATE_BIN:-target/release/spate}"
RATE="${RATE:-75MB/s}" ROUNDS="${ROUNDS:-2}" OUT="${OUT:-target/bench/fixed-rate-vs-kafka}" P="${PORT:-29392}"
mkdir -p "$OUT"
for round in $(seq 1 "$ROUNDS"); do
  for sys in spate kafka; do
    rm -rf "$OUT/data"; mkdir -p "$OUT/data"
    if [ "$sys" = spate ]; then
      taskset -c 0 "$S" start --data-dir "$OUT/data" --listen 127.0.0.1:$P --admin-listen none --cores 1 > "$OUT/broker.log" 2>&1 &
    else
      taskset -c 0 bench/peers/kafka start --data-dir "$OUT/data" --listen 127.0.0.1:$P > "$OUT/broker.log" 2>&1 &
    fi
    BP=$!
    for _ in $(seq 1 120); do grep -q ready "$OUT/broker.log" && break; sleep 0.5; done
    for linger in 5 0; do
      timeout 120 "$S" bench produce --acks 1 --rate "$RATE" --linger-ms $linger --brokers 127.0.0.1:$P \
        --topic fr$linger --partitions 8 --duration-s 14 --warmup-s 6 --client-cores 1 --quiet \
        --json "$OUT/r-$round-$sys-$linger.json" > /dev/null 2>&1 || echo "FAIL round $round $sys linger $linger"
    done
    kill $BP; wait $BP 2>/dev/null
  done
done
rm -rf "$OUT/data"
python3 - "$OUT" <<'PY'
import glob, json, sys
for f in sorted(glob.glob(sys.argv[1] + "/r-*.json")):
    p = json.load(open(f))["produce"]; l = p["latency_us"]; r = p.get("request_us", {})
    q = lambda k: r.get(k, {}).get("p99")
    print(f.rsplit("/", 1)[1], round(p["mb_per_s"], 1), "p50", l["p50"], "p99", l["p99"], "p99.9", l["p99.9"],
          "round trip p99", q("round_trip"), "batch p99", q("batch_wait"), "in-flight p99", q("in_flight_wait"))
PY
