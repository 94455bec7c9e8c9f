#!/bin/bash
# A/B of the latency-budget and reply-writer changes: three brokers, one client (spate-B's bench, no tick).
# base = 5f16533 (before), A = 2f6ad12 (budget recorded), B = d7172a6+ (budget + writer sends before waiting)
# usage: put the three broker binaries in DIR as spate-base, spate-A, spate-B; run from DIR
cd "${1:-.}"
CLIENT=./spate-B
for round in 1 2; do
  for b in base A B; do
    for wl in "e2e-all:e2e --acks all --rate 50MB/s" "e2e-1:e2e --acks 1 --rate 50MB/s" "produce-1:produce --acks 1"; do
      name=${wl%%:*}; args=${wl#*:}
      rm -rf data; ./spate-$b start --data-dir ./data --listen 127.0.0.1:29092 --admin-listen 127.0.0.1:29093 --cores 1 > broker.log 2>&1 &
      BP=$!; sleep 1.5
      $CLIENT bench $args --brokers 127.0.0.1:29092 --topic ab --partitions 8 --duration-s 10 --warmup-s 2 --quiet --client-cores 1 --json ./r-$round-$b-$name.json > /dev/null 2>&1 || echo "FAIL $round $b $name"
      kill $BP; wait $BP 2>/dev/null
    done
  done
done
rm -rf data
