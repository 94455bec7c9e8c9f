"""Apache Kafka 4.3.1's own command-line tools against Spate: kafka-topics, kafka-console-producer,
kafka-console-consumer and kafka-configs, run from the jars ci/install-deps fetches
(helpers.kafka_tool)."""

from __future__ import annotations

import uuid

from helpers import end_offsets, kafka_tool

TOPICS = "org.apache.kafka.tools.TopicCommand"
PRODUCER = "org.apache.kafka.tools.ConsoleProducer"
CONSUMER = "org.apache.kafka.tools.consumer.ConsoleConsumer"
CONFIGS = "kafka.admin.ConfigCommand"


def topics(broker, *args, check=True):
    return kafka_tool(TOPICS, "--bootstrap-server", broker.bootstrap, *args, check=check)


def topic_configs(broker, topic, *args):
    return kafka_tool(CONFIGS, "--bootstrap-server", broker.bootstrap, "--entity-type", "topics",
                      "--entity-name", topic, *args)


def test_kafka_topics_create_list_describe_delete(broker):
    topic = "tools-" + uuid.uuid4().hex[:6]
    out = topics(broker, "--create", "--topic", topic, "--partitions", "3", "--replication-factor", "1",
                 "--config", "retention.ms=3600000").stdout
    assert f"Created topic {topic}." in out
    assert topic in topics(broker, "--list").stdout.split()

    described = topics(broker, "--describe", "--topic", topic).stdout
    header = next(ln for ln in described.splitlines() if ln.startswith(f"Topic: {topic}"))
    assert "PartitionCount: 3" in header and "ReplicationFactor: 1" in header
    assert "retention.ms=3600000" in header
    partition_lines = [ln for ln in described.splitlines() if "Partition: " in ln and "Leader: 1" in ln]
    assert sorted(int(ln.split("Partition: ")[1].split()[0]) for ln in partition_lines) == [0, 1, 2]

    again = topics(broker, "--create", "--topic", topic, "--partitions", "1", check=False)
    assert again.returncode != 0 and "already exists" in (again.stdout + again.stderr)

    topics(broker, "--delete", "--topic", topic)
    assert topic not in topics(broker, "--list").stdout.split()
    gone = topics(broker, "--describe", "--topic", topic, check=False)
    assert gone.returncode != 0 and "does not exist" in (gone.stdout + gone.stderr)


def test_console_producer_and_consumer_round_trip(broker):
    topic = "console-" + uuid.uuid4().hex[:6]
    topics(broker, "--create", "--topic", topic, "--partitions", "1")
    lines = [f"line {i} {uuid.uuid4().hex}" for i in range(20)]
    kafka_tool(PRODUCER, "--bootstrap-server", broker.bootstrap, "--topic", topic,
               "--producer-property", "acks=all", input="\n".join(lines) + "\n")
    assert end_offsets(broker.bootstrap, topic, 1) == {0: len(lines)}

    consumed = kafka_tool(CONSUMER, "--bootstrap-server", broker.bootstrap, "--topic", topic,
                          "--from-beginning", "--max-messages", str(len(lines)), "--timeout-ms", "60000")
    assert consumed.stdout.splitlines() == lines
    assert f"Processed a total of {len(lines)} messages" in consumed.stderr


def test_kafka_configs_describe_alter_delete(broker):
    topic = "configs-" + uuid.uuid4().hex[:6]
    topics(broker, "--create", "--topic", topic, "--partitions", "1")

    def dynamic_configs():
        out = topic_configs(broker, topic, "--describe").stdout
        assert f"Dynamic configs for topic {topic} are:" in out
        return dict(ln.strip().split(" ")[0].split("=", 1) for ln in out.splitlines()[1:] if "=" in ln)

    assert dynamic_configs() == {}
    out = topic_configs(broker, topic, "--alter", "--add-config", "retention.ms=7200000,cleanup.policy=compact").stdout
    assert f"Completed updating config for topic {topic}." in out
    assert dynamic_configs() == {"retention.ms": "7200000", "cleanup.policy": "compact"}

    topic_configs(broker, topic, "--alter", "--delete-config", "cleanup.policy")
    assert dynamic_configs() == {"retention.ms": "7200000"}

    bad = kafka_tool(CONFIGS, "--bootstrap-server", broker.bootstrap, "--entity-type", "topics",
                     "--entity-name", topic, "--alter", "--add-config", "retention.ms=soon", check=False)
    assert bad.returncode != 0
    assert dynamic_configs() == {"retention.ms": "7200000"}
