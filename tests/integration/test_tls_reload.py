"""Certificate reload without a restart (issue 19): Kafka's own kafka-configs alters a TLS
listener's keystore on the broker (IncrementalAlterConfigs on the BROKER resource), and SIGHUP
reads the stores again. The certificate the listener serves is read with Python's ssl before
and after; new connections of a real client (confluent-kafka) work with the new one, a
connection opened before keeps working, and a bad keystore is refused with the old certificate
still served."""

from __future__ import annotations

import shutil
import signal
import socket
import ssl
import uuid

import pytest

import kafka_wire as w
from conftest import free_port
from helpers import create_topic, kafka_tool
from security import api_versions_over, confluent_round_trip, make_pki, ssl_conf
from security import secure_brokers  # noqa: F401 (fixture)

CONFIGS = "kafka.admin.ConfigCommand"
KEYSTORE = "listener.name.ssl.ssl.keystore.location"


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_pki(tmp_path_factory.mktemp("reload-pki"), servers=("server", "renewed"))


@pytest.fixture
def reload_broker(secure_brokers, pki, tmp_path):
    """A PLAINTEXT listener (setup, kafka-configs) and an SSL one whose keystore is a copy of
    `server.pem` in `tmp_path` (`broker.keystore`), so a test can rewrite it."""
    keystore = tmp_path / "live.pem"
    shutil.copy(pki["server_pem"], keystore)
    b = secure_brokers("reload", {"ssl": ("SSL", "SSL", free_port())}, {KEYSTORE: str(keystore)})
    b.keystore = keystore
    return b


def node_id(broker) -> str:
    with w.Conn(broker.host, broker.port) as conn:
        return str(w.metadata_v1(conn)[0][0][0])


def der(pem_path) -> bytes:
    return ssl.PEM_cert_to_DER_cert(open(pem_path).read())


def tls_socket(address, pki) -> ssl.SSLSocket:
    host, port = address.rsplit(":", 1)
    context = ssl.create_default_context(cafile=pki["ca"])
    return context.wrap_socket(socket.create_connection((host, int(port)), timeout=10),
                               server_hostname="localhost")


def served(address, pki) -> bytes:
    """The certificate (DER) a new connection to `address` is served."""
    with tls_socket(address, pki) as s:
        return s.getpeercert(binary_form=True)


def alter_keystore(broker, path, check=True):
    return kafka_tool(CONFIGS, "--bootstrap-server", broker.bootstrap, "--entity-type", "brokers",
                      "--entity-name", node_id(broker), "--alter", "--add-config", f"{KEYSTORE}={path}",
                      check=check)


def test_kafka_configs_swaps_the_keystore_for_new_connections(reload_broker, pki, tmp_path):
    b = reload_broker
    topic = "reload-" + uuid.uuid4().hex[:6]
    create_topic(b.bootstrap, topic, 1)
    assert served(b.ssl, pki) == der(pki["server_crt"])
    before = tls_socket(b.ssl, pki)
    assert api_versions_over(before)
    alter_keystore(b, pki["renewed_pem"])
    assert served(b.ssl, pki) == der(pki["renewed_crt"])
    # The connection opened before the swap keeps its certificate and keeps being served.
    assert before.getpeercert(binary_form=True) == der(pki["server_crt"])
    assert api_versions_over(before)
    before.close()
    confluent_round_trip(b.ssl, ssl_conf(pki), topic)
    b.wait_for_log("TLS stores altered: new connections use them")
    # kafka-configs describes the altered setting, and deleting it goes back to the start's.
    node = node_id(b)
    described = kafka_tool(CONFIGS, "--bootstrap-server", b.bootstrap, "--describe", "--entity-type", "brokers",
                           "--entity-name", node).stdout
    assert f"{KEYSTORE}={pki['renewed_pem']}" in described, described
    kafka_tool(CONFIGS, "--bootstrap-server", b.bootstrap, "--entity-type", "brokers", "--entity-name", node,
               "--alter", "--delete-config", KEYSTORE)
    assert served(b.ssl, pki) == der(pki["server_crt"])
    # The same path again, rewritten: Kafka's reload of a modified file.
    shutil.copy(pki["renewed_pem"], b.keystore)
    alter_keystore(b, b.keystore)
    assert served(b.ssl, pki) == der(pki["renewed_crt"])


def test_a_bad_keystore_is_refused_and_the_old_certificate_stays(reload_broker, pki, tmp_path):
    b = reload_broker
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a keystore\n")
    mismatched = tmp_path / "mismatched.pem"
    mismatched.write_bytes(open(pki["renewed_key"], "rb").read() + open(pki["server_crt"], "rb").read())
    for bad, reason in [(tmp_path / "missing.pem", "cannot read"), (garbage, "no certificate"),
                        (mismatched, "ssl.keystore")]:
        out = alter_keystore(b, bad, check=False)
        said = out.stdout + out.stderr
        assert out.returncode != 0, said
        assert "InvalidConfigurationException" in said and reason in said, said
        assert "the current one stays" in said, said
        assert served(b.ssl, pki) == der(pki["server_crt"])
    confluent_round_trip(b.ssl, ssl_conf(pki), "after-refusal-" + uuid.uuid4().hex[:6], n=20)


def test_only_a_listeners_stores_of_this_broker_change(reload_broker, pki):
    from confluent_kafka import KafkaError, KafkaException
    from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource

    b = reload_broker
    admin = AdminClient({"bootstrap.servers": b.bootstrap})

    def alter(broker_id, name, value):
        entry = ConfigEntry(name, value, incremental_operation=AlterConfigOpType.SET)
        resource = ConfigResource(ConfigResource.Type.BROKER, broker_id, incremental_configs=[entry])
        try:
            admin.incremental_alter_configs([resource])[resource].result(30)
        except KafkaException as e:
            return e.args[0].code(), e.args[0].str()
        return KafkaError.NO_ERROR, ""

    me = node_id(b)
    for broker_id, name, code, said in [
        (me, "listener.name.plaintext.ssl.keystore.location", KafkaError.INVALID_CONFIG, "not a TLS listener"),
        (me, "listener.name.ssl.ssl.client.auth", KafkaError.INVALID_CONFIG, "cannot change at run time"),
        (me, "log.retention.ms", KafkaError.INVALID_CONFIG, "cannot change at run time"),
    ]:
        got, message = alter(broker_id, name, pki["renewed_pem"])
        assert got == code and said in message, (name, got, message)
    # Kafka's cluster default (an empty name) never holds a listener's stores. (Another broker's
    # id goes to that broker: the unit tests of tls_reload cover a stray one.)
    out = kafka_tool(CONFIGS, "--bootstrap-server", b.bootstrap, "--entity-type", "brokers", "--entity-default",
                     "--alter", "--add-config", f"{KEYSTORE}={pki['renewed_pem']}", check=False)
    assert out.returncode != 0 and "broker id must be specified" in out.stdout + out.stderr, out
    assert served(b.ssl, pki) == der(pki["server_crt"])


def test_sighup_reads_the_stores_again(reload_broker, pki):
    b = reload_broker
    shutil.copy(pki["renewed_pem"], b.keystore)
    assert served(b.ssl, pki) == der(pki["server_crt"])
    b.proc.send_signal(signal.SIGHUP)
    b.wait_for_log("TLS stores read again (SIGHUP)")
    assert served(b.ssl, pki) == der(pki["renewed_crt"])
    b.keystore.write_text("half-copied garbage\n")
    b.proc.send_signal(signal.SIGHUP)
    b.wait_for_log("TLS stores not reloaded (SIGHUP)")
    assert served(b.ssl, pki) == der(pki["renewed_crt"])
    assert b.alive()
