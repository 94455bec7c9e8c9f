"""CreatePartitions (API 37) on a single node through confluent-kafka's AdminClient."""

from __future__ import annotations

import pytest
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewPartitions

from helpers import create_topic, wait_topic


def grow(admin, topic, total, validate_only=False):
    futures = admin.create_partitions([NewPartitions(topic, total)], validate_only=validate_only,
                                      request_timeout=30)
    return futures[topic].result(30)


def error_name(excinfo) -> str:
    return excinfo.value.args[0].name()


def test_create_partitions_adds_writable_partitions_that_survive_restart(broker):
    create_topic(broker.bootstrap, "growing", 2)
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    grow(admin, "growing", 4, validate_only=True)
    wait_topic(broker.bootstrap, "growing", 2)  # validate_only changed nothing
    grow(admin, "growing", 5)
    wait_topic(broker.bootstrap, "growing", 5)

    producer = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all"})
    for p in range(5):
        producer.produce("growing", key=b"k", value=f"to {p}".encode(), partition=p)
    assert producer.flush(30) == 0

    broker.stop()
    broker.restart()
    wait_topic(broker.bootstrap, "growing", 5)
    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "unused",
                         "enable.auto.commit": False})
    consumer.assign([TopicPartition("growing", p, 0) for p in range(5)])
    seen = {}
    for _ in range(200):
        msg = consumer.poll(0.2)
        if msg is not None and not msg.error():
            seen[msg.partition()] = msg.value().decode()
        if len(seen) == 5:
            break
    consumer.close()
    assert seen == {p: f"to {p}" for p in range(5)}


@pytest.mark.parametrize("topic,total,error", [
    ("fixed", 3, "INVALID_PARTITIONS"),   # not more than it has
    ("fixed", 1, "INVALID_PARTITIONS"),
    ("missing", 4, "UNKNOWN_TOPIC_OR_PART"),
])
def test_create_partitions_errors(broker, topic, total, error):
    create_topic(broker.bootstrap, "fixed", 3)
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    with pytest.raises(KafkaException) as excinfo:
        grow(admin, topic, total)
    assert error_name(excinfo) == error
    wait_topic(broker.bootstrap, "fixed", 3)
