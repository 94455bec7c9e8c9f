#!/usr/bin/env bash
# What TLS costs (issue 19): produce and fetch throughput and the broker's CPU per GB, plaintext
# against TLS, on Spate and on Apache Kafka 4.3.1 (bench/peers/kafka), on the same pinned cores
# with the same client (`spate bench`, over TLS through --command-config).
#
#   bench/scripts/tls_cost.sh [--gib G] [--warmup-s S] [--max-s S] [--rounds N]
#                             [--systems spate,kafka] [--broker-cores LIST] [--client-cores LIST]
#                             [--out FILE]
#
# Each round starts, for each system and each of PLAINTEXT and SSL, a fresh broker with both
# listeners (so the two runs differ only in the listener the client uses), pinned to the
# broker cores (default 0), and runs on the client cores (default the last CPU):
#   produce  `spate bench produce`: 1 topic x 8 partitions, 1 KiB records, acks=1, G GiB
#            (default 4; enough to outlast the warm-up) after S s of warm-up (default 3), at
#            most --max-s s (default 120)
#   fetch    `spate bench consume --to-end`: one consumer reads what was produced, from the
#            page cache
# The broker's CPU is utime + stime of its process (/proc/<pid>/stat; Kafka: the JVM) over each
# phase, divided by the payload bytes of the phase. Rounds alternate the order of the systems.
# Prints one row per run, the medians per system and protocol, and a last line of ratios:
# TLS/plaintext of throughput and CPU per GB for each system, and Spate/Kafka over TLS.
# The JSON of every run and the summary go to --out (default target/bench/tls-cost-<date>.json).
#
# Needs: the spate binary ($SPATE_BIN, default $CARGO_TARGET_DIR/release/spate or
# target/release/spate), Kafka's jars (bench/peers/kafka fetch; $KAFKA_PEER_LIB), openssl, python3.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
SPATE="${SPATE_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/spate}"
CPUS="$(nproc)"
GIB=4 WARMUP_S=3 MAX_S=120 ROUNDS=1 SYSTEMS=spate,kafka BROKER_CORES=0
CLIENT_CORES="$((CPUS - 1))" OUT=""
while [ $# -gt 0 ]; do
  case "$1" in
    --gib) GIB="$2"; shift 2 ;;
    --warmup-s) WARMUP_S="$2"; shift 2 ;;
    --max-s) MAX_S="$2"; shift 2 ;;
    --rounds) ROUNDS="$2"; shift 2 ;;
    --systems) SYSTEMS="$2"; shift 2 ;;
    --broker-cores) BROKER_CORES="$2"; shift 2 ;;
    --client-cores) CLIENT_CORES="$2"; shift 2 ;;
    --out) OUT="$2"; shift 2 ;;
    -h|--help) sed -n '2,25p' "$0"; exit 0 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
[ -x "$SPATE" ] || { echo "no spate binary at $SPATE (cargo build --release -p spate-broker)" >&2; exit 1; }
WORK="$ROOT/target/bench/tls-cost"
OUT="${OUT:-$ROOT/target/bench/tls-cost-$(date -u +%Y-%m-%d).json}"
BYTES="$(python3 -c "print(int($GIB * (1 << 30)))")"
HZ="$(getconf CLK_TCK)"
rm -rf "$WORK" && mkdir -p "$WORK/pki"

# A CA and a server certificate for 127.0.0.1 and localhost (Kafka's PEM keystore: key + chain).
pki() {
  local d="$WORK/pki"
  openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=tls-cost CA" \
    -keyout "$d/ca.key" -out "$d/ca.crt" 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" \
    -keyout "$d/server.key" -out "$d/server.csr" 2>/dev/null
  printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' \
    >"$d/server.ext"
  openssl x509 -req -in "$d/server.csr" -CA "$d/ca.crt" -CAkey "$d/ca.key" -CAcreateserial \
    -days 2 -extfile "$d/server.ext" -out "$d/server.crt" 2>/dev/null
  cat "$d/server.key" "$d/server.crt" >"$d/server.pem"
  printf 'security.protocol=SSL\nssl.truststore.type=PEM\nssl.truststore.location=%s\n' \
    "$d/ca.crt" >"$WORK/ssl.properties"
}

free_port() {
  python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'
}

cpu_s() { # utime + stime of a process, in seconds
  awk -v hz="$HZ" '{printf "%.3f\n", ($14 + $15) / hz}' "/proc/$1/stat"
}

BROKER_GROUP="" BROKER_PID=""
stop_broker() {
  [ -n "$BROKER_GROUP" ] || return 0
  kill -TERM -- "-$BROKER_GROUP" 2>/dev/null || true
  for _ in $(seq 1 600); do kill -0 "$BROKER_GROUP" 2>/dev/null || break; sleep 0.1; done
  kill -KILL -- "-$BROKER_GROUP" 2>/dev/null || true
  wait "$BROKER_GROUP" 2>/dev/null || true
  # The JVM may outlive the peer script by a moment.
  for _ in $(seq 1 100); do kill -0 "$BROKER_PID" 2>/dev/null || break; sleep 0.1; done
  BROKER_GROUP="" BROKER_PID=""
}
trap 'stop_broker; rm -rf "$WORK/data"' EXIT

# start_broker SYSTEM PLAINTEXT_PORT SSL_PORT: a fresh broker with both listeners, pinned.
start_broker() {
  local system="$1" plain="127.0.0.1:$2" ssl="127.0.0.1:$3" data="$WORK/data"
  rm -rf "$data" && mkdir -p "$data"
  local cores; cores="$(tr ',' '\n' <<<"$BROKER_CORES" | wc -l)"
  case "$system" in
    spate)
      setsid taskset -c "$BROKER_CORES" "$SPATE" start --data-dir "$data" --listen "$plain" \
        --cores "$cores" --set "listeners=PLAINTEXT://$plain,SSL://$ssl" \
        --set "ssl.keystore.location=$WORK/pki/server.pem" >"$WORK/broker.log" 2>&1 &
      BROKER_GROUP=$! BROKER_PID=$! ;;
    kafka)
      setsid taskset -c "$BROKER_CORES" "$ROOT/bench/peers/kafka" start --data-dir "$data" \
        --listen "$plain" --ssl-listen "$ssl" --ssl-keystore "$WORK/pki/server.pem" \
        >"$WORK/broker.log" 2>&1 &
      BROKER_GROUP=$! BROKER_PID="" ;;
  esac
  for _ in $(seq 1 1200); do
    if python3 "$ROOT/tests/reference/probe_ready.py" 127.0.0.1 "$2" 2>/dev/null; then break; fi
    kill -0 "$BROKER_GROUP" 2>/dev/null || { tail -30 "$WORK/broker.log" >&2; exit 1; }
    sleep 0.1
  done
  if [ "$system" = kafka ]; then
    BROKER_PID="$(pgrep -P "$BROKER_GROUP" java | head -1)"
    [ -n "$BROKER_PID" ] || { echo "cannot find the Kafka JVM" >&2; exit 1; }
  fi
}

# run_one ROUND SYSTEM PROTOCOL: one broker, the produce then the fetch phase.
run_one() {
  local round="$1" system="$2" protocol="$3" plain ssl bootstrap security=()
  plain="$(free_port)" ssl="$(free_port)"
  start_broker "$system" "$plain" "$ssl"
  bootstrap="127.0.0.1:$plain"
  if [ "$protocol" = SSL ]; then bootstrap="127.0.0.1:$ssl" security=(--command-config "$WORK/ssl.properties"); fi
  local run="$WORK/r$round-$system-$protocol" c0 c1 c2
  echo "tls-cost: round $round $system $protocol" >&2
  c0="$(cpu_s "$BROKER_PID")"
  "$SPATE" bench produce --brokers "$bootstrap" "${security[@]}" --topic tls-cost --partitions 8 \
    --record-bytes 1024 --acks 1 --total-bytes "$BYTES" --warmup-s "$WARMUP_S" \
    --duration-s "$MAX_S" --client-cores "$CLIENT_CORES" --quiet --json "$run-produce.json"
  c1="$(cpu_s "$BROKER_PID")"
  "$SPATE" bench consume --brokers "$bootstrap" "${security[@]}" --topic tls-cost --partitions 8 \
    --to-end --warmup-s 0 --duration-s 900 --client-cores "$CLIENT_CORES" --quiet \
    --json "$run-consume.json"
  c2="$(cpu_s "$BROKER_PID")"
  stop_broker
  rm -rf "$WORK/data"
  printf '{"round": %s, "system": "%s", "protocol": "%s", "produce_cpu_s": %s, "fetch_cpu_s": %s, "produce": "%s", "fetch": "%s"}\n' \
    "$round" "$system" "$protocol" "$(awk "BEGIN{print $c1 - $c0}")" "$(awk "BEGIN{print $c2 - $c1}")" \
    "$run-produce.json" "$run-consume.json" >>"$WORK/runs.jsonl"
}

pki
IFS=, read -r -a systems <<<"$SYSTEMS"
for round in $(seq 1 "$ROUNDS"); do
  order=("${systems[@]}")
  if [ $((round % 2)) -eq 0 ]; then order=($(printf '%s\n' "${systems[@]}" | tac)); fi
  for system in "${order[@]}"; do
    for protocol in PLAINTEXT SSL; do run_one "$round" "$system" "$protocol"; done
  done
done
python3 "$HERE/tls_cost_report.py" "$WORK/runs.jsonl" "$OUT"
