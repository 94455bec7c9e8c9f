"""SASL over TLS and mTLS with every client (issue 19): a broker with PLAINTEXT (setup),
SASL_SSL (PLAIN users from the JAAS config, SCRAM users from the metadata log) and MTLS
(client certificate required) listeners; franz-go, kafkajs, kafka-python and `spate` itself
produce and consume over them. librdkafka, kcat and the Java tools are covered over SASL in
test_sasl.py and over TLS in test_tls.py."""

from __future__ import annotations

import subprocess
import uuid

import pytest

from conftest import SPATE_BIN, Broker, free_port
from helpers import consume, create_topic, produce, verify
from test_sasl import JAAS, spate_cli
from test_tls import _pki

N = 60


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return _pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def broker(request, pki):
    """`bootstrap` PLAINTEXT, `sasl_ssl` SASL_SSL, `mtls` SSL with client auth required; SCRAM
    user bob (SHA-512), PLAIN users admin and alice."""
    b = Broker("saslssl-" + uuid.uuid4().hex[:6])
    b.sasl_ssl, b.mtls = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    b.settings.update({
        "listeners": f"PLAINTEXT://{b.bootstrap},SASL_SSL://{b.sasl_ssl},MTLS://{b.mtls}",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,SASL_SSL:SASL_SSL,MTLS:SSL",
        "ssl.keystore.location": pki["server_pem"],
        "listener.name.sasl_ssl.plain.sasl.jaas.config": JAAS,
        "listener.name.mtls.ssl.client.auth": "required",
        "listener.name.mtls.ssl.truststore.location": pki["ca"],
    })
    b.start()
    try:
        spate_cli(b, "user", "add", "bob", "--password", "bob-secret", "--mechanism", "SCRAM-SHA-512")
        yield b
    finally:
        rep = getattr(request.node, "rep_call", None)
        failed = bool(rep and rep.failed)
        if failed:
            print(b.log_tail())
        b.cleanup(failed)


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
    props = tmp_path / "cli.properties"
    props.write_text(
        "security.protocol=SASL_SSL\n"
        f"ssl.truststore.location={pki['ca']}\n"
        "sasl.mechanism=PLAIN\n"
        'sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required '
        'username="alice" password="alice-secret";\n')
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
