#!/usr/bin/env python3
"""Spate test client: Python kafka-python (pure Python).

  produce --bootstrap H:P --topic T --count N --acks all|1 --codec gzip|snappy|lz4|zstd --client NAME
  consume --bootstrap H:P --topic T --partitions P --expect N --timeout-s S
  group-consume --bootstrap H:P --topic T --group G --member-name M [--assignor range|roundrobin|cooperative-sticky]
                [--commit sync|auto] [--max-records N] [--idle-exit-s S] [--session-timeout-ms MS] [--timeout-s S]
"""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import spate_records as R  # noqa: E402

from kafka import KafkaConsumer, KafkaProducer, TopicPartition  # noqa: E402


def produce(a) -> int:
    acks = "all" if a.acks in ("all", "-1") else int(a.acks)
    p = KafkaProducer(
        bootstrap_servers=[a.bootstrap],
        client_id=a.client,
        acks=acks,
        compression_type=None if a.codec == "none" else a.codec,
        linger_ms=5,
        # one request in flight keeps per-partition order even if a retry happens
        max_in_flight_requests_per_connection=1,
    )
    futures = []
    for i in range(a.count):
        futures.append(
            p.send(
                a.topic,
                key=R.key(a.client, i).encode(),
                value=R.value(a.client, i).encode(),
                headers=[(k, v.encode()) for k, v in R.headers(a.client, i)],
                timestamp_ms=R.timestamp(i),
            )
        )
    p.flush(timeout=90)
    acked = errors = 0
    first = None
    for f in futures:
        try:
            f.get(timeout=1)
            acked += 1
        except Exception as e:  # noqa: BLE001 - any delivery error fails the run
            errors += 1
            first = first or e
    p.close(timeout=10)
    print(f"kafka-python produce: acked={acked} errors={errors}", file=sys.stderr)
    if errors or acked != a.count:
        print(f"delivery failed: {first!r}", file=sys.stderr)
        return 1
    return 0


def consume(a) -> int:
    c = KafkaConsumer(
        bootstrap_servers=[a.bootstrap],
        client_id="kafka-python-consumer",
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    tps = [TopicPartition(a.topic, p) for p in range(a.partitions)]
    c.assign(tps)
    c.seek_to_beginning(*tps)
    got = 0
    deadline = time.monotonic() + a.timeout_s
    out = sys.stdout
    try:
        while got < a.expect and time.monotonic() < deadline:
            batches = c.poll(timeout_ms=500, max_records=2000)
            for _tp, msgs in batches.items():
                for m in msgs:
                    R.emit(out, m.partition, m.offset, m.key, m.value, m.headers, m.timestamp)
                    got += 1
    finally:
        out.flush()
        c.close()
    print(f"kafka-python consume: got={got} expected={a.expect}", file=sys.stderr)
    return 0 if got >= a.expect else 1


def group_consume(a) -> int:
    from kafka import ConsumerRebalanceListener
    from kafka.coordinator.assignors.cooperative_sticky import CooperativeStickyAssignor
    from kafka.coordinator.assignors.range import RangePartitionAssignor
    from kafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor
    from kafka.structs import OffsetAndMetadata

    stop = R.StopFlag()
    out = R.GroupOut(a.member_name)
    auto = a.commit == "auto"
    assignor = {
        "range": RangePartitionAssignor,
        "roundrobin": RoundRobinPartitionAssignor,
        "cooperative-sticky": CooperativeStickyAssignor,
    }[a.assignor]
    c = KafkaConsumer(
        bootstrap_servers=[a.bootstrap],
        client_id=a.member_name,
        group_id=a.group,
        partition_assignment_strategy=[assignor],
        session_timeout_ms=a.session_timeout_ms,
        heartbeat_interval_ms=1000,
        max_poll_interval_ms=30000,
        auto_offset_reset="earliest",
        enable_auto_commit=auto,
        auto_commit_interval_ms=1000,
    )
    pending = {}

    def commit():
        if auto or not pending:
            return
        offs = {TopicPartition(a.topic, p): OffsetAndMetadata(o, "", -1) for p, o in pending.items()}
        try:
            c.commit(offs)
        except Exception as e:  # noqa: BLE001 - report, the test decides
            out.event("commit_failed", error=repr(e))
            print(f"commit failed: {e!r}", file=sys.stderr)
            return
        out.committed(dict(pending))
        pending.clear()

    class Listener(ConsumerRebalanceListener):
        def on_partitions_revoked(self, revoked):
            # kafka-python 3 runs listeners on its IO thread, where a blocking commit() is refused;
            # nothing is pending here anyway (each polled batch is committed before the next poll).
            pending.clear()
            out.revoked([tp.partition for tp in revoked])

        def on_partitions_assigned(self, assigned):
            out.assigned([tp.partition for tp in assigned])

        def on_partitions_lost(self, lost):
            pending.clear()
            out.revoked([tp.partition for tp in lost], "lost")

    c.subscribe([a.topic], listener=Listener())
    def poll(limit):
        for msgs in c.poll(timeout_ms=500, max_records=limit).values():
            for m in msgs:
                yield m.partition, m.offset, m.key, m.value, m.headers, m.timestamp

    try:
        got, reason = R.run_group_loop(a, out, stop, poll, commit, pending)
    finally:
        c.close()  # LeaveGroup
    print(f"kafka-python group-consume {a.member_name}: got={got} exit={reason}", file=sys.stderr)
    return 0


def main(argv=None) -> int:
    a = R.parse_common(argv if argv is not None else sys.argv[1:], "kafka-python")
    if a.cmd == "group-consume":
        return group_consume(a)
    return produce(a) if a.cmd == "produce" else consume(a)


if __name__ == "__main__":
    sys.exit(main())
