#!/usr/bin/env python3
"""Spate test client: Python confluent-kafka (librdkafka).

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

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition  # noqa: E402
from confluent_kafka import OFFSET_BEGINNING  # noqa: E402


def produce(a) -> int:
    p = Producer(
        {
            "bootstrap.servers": a.bootstrap,
            "client.id": a.client,
            "acks": a.acks,
            "compression.type": a.codec,
            "linger.ms": 5,
            "message.timeout.ms": 60000,
        }
    )
    state = {"acked": 0, "errors": 0, "first": None}

    def on_delivery(err, msg):
        if err is not None:
            state["errors"] += 1
            state["first"] = state["first"] or err
        else:
            state["acked"] += 1

    for i in range(a.count):
        while True:
            try:
                p.produce(
                    a.topic,
                    key=R.key(a.client, i).encode(),
                    value=R.value(a.client, i).encode(),
                    headers=[(k, v.encode()) for k, v in R.headers(a.client, i)],
                    timestamp=R.timestamp(i),
                    on_delivery=on_delivery,
                )
                break
            except BufferError:
                p.poll(0.05)
        p.poll(0)
    remaining = p.flush(90)
    print(
        f"confluent produce: acked={state['acked']} errors={state['errors']} unflushed={remaining}",
        file=sys.stderr,
    )
    if state["errors"] or remaining or state["acked"] != a.count:
        print(f"delivery failed: {state['first']}", file=sys.stderr)
        return 1
    return 0


def consume(a) -> int:
    c = Consumer(
        {
            "bootstrap.servers": a.bootstrap,
            "client.id": "confluent-consumer",
            # librdkafka insists on a group id even for assign(); nothing is joined or committed.
            "group.id": "spate-it-assign",
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "enable.partition.eof": False,
        }
    )
    c.assign([TopicPartition(a.topic, p, OFFSET_BEGINNING) for p in range(a.partitions)])
    got = 0
    deadline = time.monotonic() + a.timeout_s
    out = sys.stdout
    try:
        while got < a.expect and time.monotonic() < deadline:
            for m in c.consume(num_messages=1000, timeout=0.5):
                if m.error():
                    if m.error().code() != KafkaError._PARTITION_EOF:
                        print(f"consume error: {m.error()}", file=sys.stderr)
                    continue
                R.emit(out, m.partition(), m.offset(), m.key(), m.value(), m.headers(), m.timestamp()[1])
                got += 1
    finally:
        out.flush()
        c.close()
    print(f"confluent consume: got={got} expected={a.expect}", file=sys.stderr)
    return 0 if got >= a.expect else 1


def group_consume(a) -> int:
    stop = R.StopFlag()
    out = R.GroupOut(a.member_name)
    auto = a.commit == "auto"
    c = Consumer(
        {
            "bootstrap.servers": a.bootstrap,
            "client.id": a.member_name,
            "group.id": a.group,
            "partition.assignment.strategy": a.assignor,
            "session.timeout.ms": a.session_timeout_ms,
            "heartbeat.interval.ms": 1000,
            "max.poll.interval.ms": 30000,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": auto,
            "auto.commit.interval.ms": 1000,
            "enable.partition.eof": False,
        }
    )
    pending = {}  # partition -> next offset, processed but not yet committed

    def commit():
        if auto or not pending:
            return
        offs = [TopicPartition(a.topic, p, o) for p, o in pending.items()]
        try:
            res = c.commit(offsets=offs, asynchronous=False)
        except Exception as e:  # noqa: BLE001 - report, the test decides
            out.event("commit_failed", error=str(e))
            print(f"commit failed: {e}", file=sys.stderr)
            return
        bad = [f"{tp.partition}:{tp.error}" for tp in (res or []) if tp.error]
        if bad:
            out.event("commit_failed", error=",".join(bad))
            return
        out.committed(dict(pending))
        pending.clear()

    def on_assign(consumer, parts):
        out.assigned([tp.partition for tp in parts])

    def on_revoke(consumer, parts):
        commit()  # what was processed is committed before the partitions go
        out.revoked([tp.partition for tp in parts])

    def on_lost(consumer, parts):
        pending.clear()
        out.revoked([tp.partition for tp in parts], "lost")

    c.subscribe([a.topic], on_assign=on_assign, on_revoke=on_revoke, on_lost=on_lost)
    def poll(limit):
        for m in c.consume(num_messages=limit, timeout=0.5):
            if m.error():
                print(f"consume error: {m.error()}", file=sys.stderr)
                continue
            yield m.partition(), m.offset(), m.key(), m.value(), m.headers(), m.timestamp()[1]

    try:
        got, reason = R.run_group_loop(a, out, stop, poll, commit, pending)
    finally:
        c.close()  # LeaveGroup
    print(f"confluent group-consume {a.member_name}: got={got} exit={reason}", file=sys.stderr)
    return 0


def main(argv=None) -> int:
    a = R.parse_common(argv if argv is not None else sys.argv[1:], "confluent")
    if a.cmd == "group-consume":
        return group_consume(a)
    return produce(a) if a.cmd == "produce" else consume(a)


if __name__ == "__main__":
    sys.exit(main())
