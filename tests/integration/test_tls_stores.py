"""Kafka's store formats on a TLS listener (issue 19): a PKCS12 keystore made by openssl, a JKS
keystore made by keytool (its key under its own password), and a PEM keystore whose PKCS#8 key
is encrypted (`ssl.key.password`), on an mTLS listener trusting a PKCS12 truststore made by
keytool. Each broker serves the certificate of its store to real clients that produce and
consume over it (confluent-kafka, and Kafka's console tools through the Java client); a wrong
password or a store without a key refuses the start with the setting named."""

from __future__ import annotations

import subprocess
import uuid

import pytest

from conftest import SPATE_BIN, free_port
from helpers import create_topic, kafka_tool
from security import CONSUMER, KEY_PASSWORD, PRODUCER, STORE_PASSWORD, client_properties
from security import confluent_round_trip, make_stores, ssl_conf
from security import pki, secure_brokers  # noqa: F401 (fixtures)


@pytest.fixture(scope="module")
def stores(pki):
    return make_stores(pki)


def ssl_broker(secure_brokers, settings: dict):
    return secure_brokers("stores", {"ssl": ("SSL", "SSL")}, settings)


def test_pkcs12_keystore(secure_brokers, pki, stores):
    b = ssl_broker(secure_brokers, {"ssl.keystore.type": "PKCS12", "ssl.keystore.location": stores["server_p12"],
                                    "ssl.keystore.password": STORE_PASSWORD})
    topic = "p12-" + uuid.uuid4().hex[:6]
    create_topic(b.bootstrap, topic, 1)
    confluent_round_trip(b.ssl, ssl_conf(pki), topic)


def test_jks_keystore_with_its_own_key_password(secure_brokers, pki, stores, tmp_path):
    b = ssl_broker(secure_brokers, {"ssl.keystore.type": "JKS", "ssl.keystore.location": stores["server_jks"],
                                    "ssl.keystore.password": STORE_PASSWORD, "ssl.key.password": KEY_PASSWORD})
    topic = "jks-" + uuid.uuid4().hex[:6]
    create_topic(b.bootstrap, topic, 1)
    props = client_properties(tmp_path / "client.properties", "SSL", truststore=pki["ca"])
    lines = [f"jks {i} {uuid.uuid4().hex}" for i in range(20)]
    kafka_tool(PRODUCER, "--bootstrap-server", b.ssl, "--topic", topic, "--command-config", props,
               "--command-property", "acks=all", input="\n".join(lines) + "\n")
    out = kafka_tool(CONSUMER, "--bootstrap-server", b.ssl, "--topic", topic, "--command-config", props,
                     "--from-beginning", "--max-messages", str(len(lines)), "--timeout-ms", "60000")
    assert out.stdout.splitlines() == lines


def test_encrypted_pem_key_on_mtls_with_a_pkcs12_truststore(secure_brokers, pki, stores):
    b = ssl_broker(secure_brokers, {
        "ssl.keystore.location": stores["server_enc_key"], "ssl.key.password": KEY_PASSWORD,
        "ssl.client.auth": "required", "ssl.truststore.type": "PKCS12",
        "ssl.truststore.location": stores["ca_p12"], "ssl.truststore.password": STORE_PASSWORD})
    topic = "enc-" + uuid.uuid4().hex[:6]
    create_topic(b.bootstrap, topic, 1)
    confluent_round_trip(b.ssl, ssl_conf(pki, "alice"), topic)


def start_refused(tmp_path, settings: dict) -> str:
    """Starts a broker with an SSL listener and `settings` that must refuse the start: its stderr."""
    args = [str(SPATE_BIN), "start", "--data-dir", str(tmp_path / uuid.uuid4().hex[:6]), "--admin-listen", "none",
            "--set", f"listeners=SSL://127.0.0.1:{free_port()}", "--set", "inter.broker.listener.name=SSL"]
    for name, value in settings.items():
        args += ["--set", f"{name}={value}"]
    out = subprocess.run(args, capture_output=True, text=True, timeout=30)
    assert out.returncode != 0, out.stdout
    assert "panicked" not in out.stderr, out.stderr
    return out.stderr


def test_wrong_passwords_and_keyless_stores_refuse_the_start(tmp_path, pki, stores):
    for settings, said in [
        ({"ssl.keystore.type": "PKCS12", "ssl.keystore.location": stores["server_p12"],
          "ssl.keystore.password": "wrong"}, "ssl.keystore.password"),
        ({"ssl.keystore.type": "JKS", "ssl.keystore.location": stores["server_jks"],
          "ssl.keystore.password": "wrong"}, "ssl.keystore.password"),
        ({"ssl.keystore.type": "JKS", "ssl.keystore.location": stores["server_jks"],
          "ssl.keystore.password": STORE_PASSWORD}, "ssl.key.password"),
        ({"ssl.keystore.location": stores["server_enc_key"], "ssl.key.password": "wrong"}, "ssl.key.password"),
        ({"ssl.keystore.location": stores["server_enc_key"]}, "ssl.key.password"),
        ({"ssl.keystore.type": "PKCS12", "ssl.keystore.location": stores["ca_p12"],
          "ssl.keystore.password": STORE_PASSWORD}, "holds no private key"),
    ]:
        stderr = start_refused(tmp_path, settings)
        assert "listener SSL" in stderr and said in stderr, (settings, stderr)
