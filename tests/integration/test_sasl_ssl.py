"""SASL over TLS and mTLS with every client (issue 19): a broker with PLAINTEXT (setup),
SASL_SSL (PLAIN users from the JAAS config, SCRAM users from the metadata log) and MTLS
(client certificate required) listeners; franz-go, kafkajs, kafka-python and `spate` itself
produce and consume over them; Kafka's console tools (with a client properties file) and kcat
round-trip over SASL_SSL with SCRAM-SHA-512 and PLAIN, and a wrong password fails them with
nothing produced. librdkafka through confluent-kafka is covered over SASL in test_sasl.py and
over TLS in test_tls.py."""

from __future__ import annotations

import subprocess
import uuid

import pytest

from conftest import SPATE_BIN
from helpers import consume, create_topic, end_offsets, kafka_tool, produce, verify
from security import CONSUMER, JAAS, PRODUCER, client_properties, kcat_security, spate_cli
from security import pki, secure_brokers  # noqa: F401 (fixtures)

N = 60


@pytest.fixture
def broker(secure_brokers, pki):
    """`bootstrap` PLAINTEXT, `sasl_ssl` SASL_SSL, `mtls` SSL with client auth required; SCRAM
    user bob (SHA-512), PLAIN users admin and alice."""
    b = secure_brokers("saslssl", {"sasl_ssl": ("SASL_SSL", "SASL_SSL"), "mtls": ("MTLS", "SSL")}, {
        "ssl.keystore.location": pki["server_pem"],
        "listener.name.sasl_ssl.plain.sasl.jaas.config": JAAS,
        "listener.name.mtls.ssl.client.auth": "required",
        "listener.name.mtls.ssl.truststore.location": pki["ca"],
    })
    spate_cli(b, "user", "add", "bob", "--password", "bob-secret", "--mechanism", "SCRAM-SHA-512")
    return b


# (mechanism, user, password) over SASL_SSL, or None for mTLS as alice.
MODES = {
    "sasl-ssl-scram-sha-512": ("SCRAM-SHA-512", "bob", "bob-secret"),
    "sasl-ssl-plain": ("PLAIN", "alice", "alice-secret"),
    "mtls": None,
}


def security_env(monkeypatch, pki, mode):
    monkeypatch.setenv("SPATE_SSL_CA", pki["ca"])
    if MODES[mode] is None:
        monkeypatch.setenv("SPATE_SECURITY_PROTOCOL", "SSL")
        monkeypatch.setenv("SPATE_SSL_CERT", pki["alice_crt"])
        monkeypatch.setenv("SPATE_SSL_KEY", pki["alice_key"])
        return
    mechanism, user, password = MODES[mode]
    monkeypatch.setenv("SPATE_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("SPATE_SASL_MECHANISM", mechanism)
    monkeypatch.setenv("SPATE_SASL_USERNAME", user)
    monkeypatch.setenv("SPATE_SASL_PASSWORD", password)


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("client", ["franz-go", "kafkajs"])
def test_franz_go_and_kafkajs_produce_and_consume_over_sasl_ssl_and_mtls(broker, pki, monkeypatch, client, mode):
    topic = f"{client}-{mode}-{uuid.uuid4().hex[:6]}"
    create_topic(broker.bootstrap, topic, 2)
    listener = broker.mtls if MODES[mode] is None else broker.sasl_ssl
    security_env(monkeypatch, pki, mode)
    produce(client, listener, topic, N, acks="all", codec="gzip")
    records = consume(client, listener, topic, 2, N, timeout_s=60)
    verify(records, client, N, broker.bootstrap, topic, 2)


def test_a_wrong_scram_password_fails_franz_go_and_kafkajs(broker, pki, monkeypatch):
    topic = "wrong-pw-" + uuid.uuid4().hex[:6]
    create_topic(broker.bootstrap, topic, 1)
    security_env(monkeypatch, pki, "sasl-ssl-scram-sha-512")
    monkeypatch.setenv("SPATE_SASL_PASSWORD", "not-bobs")
    from helpers import run_client
    for client in ("franz-go", "kafkajs"):
        p = run_client(client, ["consume", "--bootstrap", broker.sasl_ssl, "--topic", topic,
                                "--partitions", 1, "--expect", 1, "--timeout-s", 10], timeout=60)
        assert p.returncode != 0, client
    broker.wait_for_log("SASL authentication failed")


def test_kafka_python_over_sasl_ssl_with_scram_sha_512(broker, pki):
    from kafka import KafkaConsumer, KafkaProducer

    topic = "kp-ssl-" + uuid.uuid4().hex[:6]
    create_topic(broker.bootstrap, topic, 1)
    auth = dict(bootstrap_servers=broker.sasl_ssl, security_protocol="SASL_SSL", ssl_cafile=pki["ca"],
                sasl_mechanism="SCRAM-SHA-512", sasl_plain_username="bob", sasl_plain_password="bob-secret")
    p = KafkaProducer(acks="all", **auth)
    for i in range(10):
        p.send(topic, f"kp-{i}".encode())
    p.flush(60)
    p.close()
    c = KafkaConsumer(topic, auto_offset_reset="earliest", consumer_timeout_ms=20000, **auth)
    got = [m.value.decode() for m in c][:10]
    c.close()
    assert got == [f"kp-{i}" for i in range(10)]


@pytest.mark.spate_only
def test_spate_cli_over_sasl_ssl_with_plain_from_a_jaas_config(broker, pki, tmp_path):
    props = client_properties(tmp_path / "cli.properties", "SASL_SSL", truststore=pki["ca"], mechanism="PLAIN",
                              user="alice", password="alice-secret", pem_types=False)
    topic = "cli-ssl-" + uuid.uuid4().hex[:6]

    def spate(*args, input=None):
        return subprocess.run([str(SPATE_BIN), *args, "--brokers", broker.sasl_ssl, "--command-config", str(props)],
                              input=input, capture_output=True, text=True, timeout=60)

    made = spate("topic", "create", topic, "--partitions", "2")
    assert made.returncode == 0, made.stderr
    sent = spate("produce", topic, input="a\nb\nc\n")
    assert sent.returncode == 0, sent.stderr
    got = spate("consume", topic, "--from-beginning", "--max", "3", "--timeout-ms", "30000")
    assert got.returncode == 0, got.stderr
    assert sorted(got.stdout.split()) == ["a", "b", "c"]
    users = spate("user", "list")
    assert users.returncode == 0 and "bob" in users.stdout, users.stderr


# SASL_SSL users of the broker fixture, by mechanism.
SASL_USERS = {"SCRAM-SHA-512": ("bob", "bob-secret"), "PLAIN": ("alice", "alice-secret")}


def java_properties(path, pki, mechanism, user, password):
    """A Kafka client properties file for SASL_SSL, as an operator writes one for the tools."""
    return client_properties(path, "SASL_SSL", truststore=pki["ca"], mechanism=mechanism, user=user,
                             password=password)


def kcat(broker, pki, mechanism, user, password, *args, input=None):
    cmd = ["kcat", "-b", broker.sasl_ssl, *kcat_security("SASL_SSL", ca=pki["ca"], mechanism=mechanism,
                                                         user=user, password=password), *args]
    return subprocess.run(cmd, input=input, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("mechanism", list(SASL_USERS))
def test_kafka_console_tools_over_sasl_ssl(broker, pki, tmp_path, mechanism):
    topic = f"java-ssl-{mechanism.lower()}-{uuid.uuid4().hex[:6]}"
    create_topic(broker.bootstrap, topic, 2)
    props = java_properties(tmp_path / "client.properties", pki, mechanism, *SASL_USERS[mechanism])
    lines = [f"java {mechanism} {i} {uuid.uuid4().hex}" for i in range(20)]
    kafka_tool(PRODUCER, "--bootstrap-server", broker.sasl_ssl, "--topic", topic, "--command-config", props,
               "--command-property", "acks=all", input="\n".join(lines) + "\n")
    assert sum(end_offsets(broker.bootstrap, topic, 2).values()) == len(lines)
    out = kafka_tool(CONSUMER, "--bootstrap-server", broker.sasl_ssl, "--topic", topic, "--command-config", props,
                     "--from-beginning", "--max-messages", str(len(lines)), "--timeout-ms", "60000")
    assert sorted(out.stdout.splitlines()) == sorted(lines)
    assert f"Processed a total of {len(lines)} messages" in out.stderr


@pytest.mark.parametrize("mechanism", list(SASL_USERS))
def test_kcat_over_sasl_ssl(broker, pki, mechanism):
    topic = f"kcat-ssl-{mechanism.lower()}-{uuid.uuid4().hex[:6]}"
    create_topic(broker.bootstrap, topic, 1)
    lines = [f"kcat {mechanism} {i}" for i in range(50)]
    put = kcat(broker, pki, mechanism, *SASL_USERS[mechanism], "-P", "-t", topic, input="\n".join(lines) + "\n")
    assert put.returncode == 0, put.stderr
    got = kcat(broker, pki, mechanism, *SASL_USERS[mechanism], "-C", "-t", topic, "-o", "beginning", "-e", "-q")
    assert got.returncode == 0, got.stderr
    assert got.stdout.splitlines() == lines


@pytest.mark.spate_only("Spate's log line of the refusal")
def test_a_wrong_password_fails_the_console_producer_and_kcat_and_nothing_is_produced(broker, pki, tmp_path):
    topic = "wrong-pw-tools-" + uuid.uuid4().hex[:6]
    create_topic(broker.bootstrap, topic, 1)
    props = java_properties(tmp_path / "wrong.properties", pki, "SCRAM-SHA-512", "bob", "not-bobs")
    # --sync: each send waits for its answer, so the tool exits non-zero on the refusal.
    java = kafka_tool(PRODUCER, "--bootstrap-server", broker.sasl_ssl, "--topic", topic, "--command-config",
                      props, "--sync", input="never stored\n", check=False)
    assert java.returncode != 0, java.stdout + java.stderr
    assert "SaslAuthenticationException" in java.stderr, java.stderr[-3000:]
    put = kcat(broker, pki, "PLAIN", "alice", "not-alices", "-X", "message.timeout.ms=5000",
               "-P", "-t", topic, input="never stored either\n")
    assert put.returncode != 0, put.stderr
    assert "Authentication failed" in put.stderr, put.stderr
    assert end_offsets(broker.bootstrap, topic, 1) == {0: 0}
    broker.wait_for_log("SASL authentication failed")
