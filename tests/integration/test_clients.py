"""Cross-client durability: produce 10,000 records with each real client, crash or stop the broker,
restart it on the same data dir, and read everything back with the same client."""

import os

import pytest

from helpers import CLIENT_CMDS, CLIENTS, consume, create_topic, produce, verify

N = int(os.environ.get("SPATE_IT_RECORDS", "10000"))
PARTITIONS = 8

# (client, scenario) -> codec: all four codecs are covered, and each client uses what it ships.
CODECS = {
    ("confluent", "kill9"): "lz4",
    ("confluent", "sigterm"): "snappy",
    ("confluent", "acks1"): "lz4",
    ("kafka-python", "kill9"): "gzip",
    ("kafka-python", "sigterm"): "gzip",
    ("kafka-python", "acks1"): "gzip",
    ("java", "kill9"): "zstd",
    ("java", "sigterm"): "zstd",
    ("java", "acks1"): "zstd",
    ("franz-go", "kill9"): "snappy",
    ("franz-go", "sigterm"): "zstd",
    ("franz-go", "acks1"): "snappy",
    ("kafkajs", "kill9"): "gzip",
    ("kafkajs", "sigterm"): "gzip",
    ("kafkajs", "acks1"): "gzip",
}

PREREQS = {
    "java": CLIENTS / "java" / "classes" / "spate" / "Client.class",
    "franz-go": CLIENTS / "go" / "bin" / "spate-go-client",
    "kafkajs": CLIENTS / "node" / "node_modules" / "kafkajs" / "package.json",
}


@pytest.mark.parametrize("scenario", ["kill9", "sigterm", "acks1"])
@pytest.mark.parametrize("client", list(CLIENT_CMDS))
def test_produce_restart_consume(broker, client, scenario):
    pre = PREREQS.get(client)
    if pre is not None and not pre.exists():
        pytest.fail(f"{client} client not built ({pre} missing): run ci/install-deps")
    codec = CODECS[(client, scenario)]
    acks = "1" if scenario == "acks1" else "all"
    topic = f"rt-{client}-{scenario}"

    create_topic(broker.bootstrap, topic, PARTITIONS)
    produce(client, broker.bootstrap, topic, N, acks=acks, codec=codec)

    if scenario == "kill9":
        broker.kill()
    else:
        rc = broker.stop()
        assert rc == 0, f"broker exited {rc} on SIGTERM\n{broker.log_tail()}"
    broker.restart()

    records = consume(client, broker.bootstrap, topic, PARTITIONS, N)
    verify(records, client, N, broker.bootstrap, topic, PARTITIONS)
