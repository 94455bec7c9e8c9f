"""TLS listeners (issue 19): a PKI generated here (Python `cryptography`), a broker with PLAINTEXT,
SSL and mTLS listeners, and real clients producing and consuming over them: librdkafka
(confluent-kafka and kcat), the Java client (Kafka's console tools with a --command-config
properties file), kafka-python and `spate` itself. Wrong CAs and bad client certificates are
refused with the broker unaffected; plaintext on a TLS port and TLS on a plaintext port are
closed, not hung; Metadata answers with the advertised address of the listener a client came in
on; the mTLS client's distinguished name is its principal."""

from __future__ import annotations

import datetime
import ipaddress
import socket
import ssl
import subprocess
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

import kafka_wire as w
from conftest import SPATE_BIN, free_port
from helpers import kafka_tool

N = 200
HANDSHAKE_TIMEOUT_S = 10  # net::tls handshake bound set by the broker (server.rs)
ALICE_DN = "CN=alice,OU=eng,O=Acme\\, Inc.,C=US"


# --- the PKI --------------------------------------------------------------------------------------
def _pki(root: Path) -> dict:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.timezone.utc)

    def name(**attrs):
        oids = {"C": NameOID.COUNTRY_NAME, "O": NameOID.ORGANIZATION_NAME,
                "OU": NameOID.ORGANIZATIONAL_UNIT_NAME, "CN": NameOID.COMMON_NAME}
        return x509.Name([x509.NameAttribute(oids[k], v) for k, v in attrs.items()])

    def issue(subject, key, issuer=None, issuer_key=None, ca=False, usage=None, sans=None):
        b = (x509.CertificateBuilder().subject_name(subject).public_key(key.public_key())
             .issuer_name(issuer or subject).serial_number(x509.random_serial_number())
             .not_valid_before(now - datetime.timedelta(hours=1))
             .not_valid_after(now + datetime.timedelta(days=2))
             .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if ca:
            b = b.add_extension(x509.KeyUsage(True, False, False, False, False, True, True, False, False),
                                critical=True)
        if usage:
            b = b.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        if sans:
            b = b.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        return b.sign(issuer_key or key, hashes.SHA256())

    def new_key():
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)

    def write(stem, cert, key=None):
        (root / f"{stem}.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        if key is not None:
            (root / f"{stem}.key").write_bytes(key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))

    files = {}
    for ca_name in ("ca", "other-ca"):
        key = new_key()
        cert = issue(name(CN=f"spate test {ca_name}"), key, ca=True)
        write(ca_name, cert)
        files[ca_name] = (cert, key)
    ca_cert, ca_key = files["ca"]
    server_key = new_key()
    server = issue(name(CN="localhost"), server_key, ca_cert.subject, ca_key,
                   usage=ExtendedKeyUsageOID.SERVER_AUTH,
                   sans=[x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
    write("server", server, server_key)
    # Kafka's PEM keystore file: the key and the chain in one file.
    (root / "server.pem").write_bytes((root / "server.key").read_bytes() + (root / "server.crt").read_bytes())
    alice_key = new_key()
    alice = issue(name(C="US", O="Acme, Inc.", OU="eng", CN="alice"), alice_key, ca_cert.subject, ca_key,
                  usage=ExtendedKeyUsageOID.CLIENT_AUTH)
    write("alice", alice, alice_key)
    (root / "alice.pem").write_bytes((root / "alice.key").read_bytes() + (root / "alice.crt").read_bytes())
    other_cert, other_key = files["other-ca"]
    mallory_key = new_key()
    mallory = issue(name(CN="mallory"), mallory_key, other_cert.subject, other_key,
                    usage=ExtendedKeyUsageOID.CLIENT_AUTH)
    write("mallory", mallory, mallory_key)
    return {
        "ca": str(root / "ca.crt"), "other_ca": str(root / "other-ca.crt"),
        "server_pem": str(root / "server.pem"), "server_crt": str(root / "server.crt"),
        "server_key": str(root / "server.key"),
        "alice_crt": str(root / "alice.crt"), "alice_key": str(root / "alice.key"),
        "alice_pem": str(root / "alice.pem"),
        "mallory_crt": str(root / "mallory.crt"), "mallory_key": str(root / "mallory.key"),
    }


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return _pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def tls_broker(request, pki, monkeypatch):
    """PLAINTEXT (the fixture's port), SSL (server certificate only) and MTLS (client certificate
    required) listeners; SSL advertises `localhost`, the others 127.0.0.1. Debug logs of
    broker::transport show each TLS client's principal."""
    from conftest import Broker

    monkeypatch.setenv("SPATE_LOG", "info,broker::transport=debug")
    broker = Broker("tls", None)
    request.addfinalizer(lambda: broker.cleanup(keep=False))
    ssl_port, mtls_port = free_port(), free_port()
    broker.settings = {
        "listeners": f"PLAINTEXT://127.0.0.1:{broker.port},SSL://127.0.0.1:{ssl_port},"
                     f"MTLS://127.0.0.1:{mtls_port}",
        "advertised.listeners": f"SSL://localhost:{ssl_port}",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,SSL:SSL,MTLS:SSL",
        "ssl.keystore.location": pki["server_pem"],
        "listener.name.mtls.ssl.client.auth": "required",
        "listener.name.mtls.ssl.truststore.location": pki["ca"],
    }
    broker.start()
    broker.ssl = f"127.0.0.1:{ssl_port}"
    broker.mtls = f"127.0.0.1:{mtls_port}"
    return broker


# --- clients ---------------------------------------------------------------------------------------
def ssl_conf(pki, client=None):
    conf = {"security.protocol": "SSL", "ssl.ca.location": pki["ca"]}
    if client:
        conf |= {"ssl.certificate.location": pki[f"{client}_crt"], "ssl.key.location": pki[f"{client}_key"]}
    return conf


def confluent_round_trip(bootstrap, conf, topic, n=N):
    from confluent_kafka import Consumer, Producer

    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", **conf})
    errors = []
    for i in range(n):
        p.produce(topic, key=f"k{i}".encode(), value=f"v{i}".encode(),
                  on_delivery=lambda err, msg: err and errors.append(err))
    assert p.flush(30) == 0 and not errors, errors
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "g-" + uuid.uuid4().hex[:6],
                  "auto.offset.reset": "earliest", **conf})
    c.subscribe([topic])
    got = []
    deadline = time.monotonic() + 60
    while len(got) < n and time.monotonic() < deadline:
        m = c.poll(0.5)
        if m is not None and m.error() is None:
            got.append(m.value().decode())
    c.close()
    assert got == [f"v{i}" for i in range(n)]


def create(broker, topic, partitions=1):
    from helpers import create_topic

    create_topic(broker.bootstrap, topic, partitions)


# --- tests -----------------------------------------------------------------------------------------
def test_librdkafka_produces_and_consumes_over_ssl_and_mtls(tls_broker, pki):
    for listener, conf in [(tls_broker.ssl, ssl_conf(pki)), (tls_broker.mtls, ssl_conf(pki, "alice"))]:
        topic = "tls-rd-" + uuid.uuid4().hex[:6]
        create(tls_broker, topic)
        confluent_round_trip(listener, conf, topic)
    # The mTLS client's principal is its certificate's subject, as Kafka's DEFAULT rule gives it.
    tls_broker.wait_for_log(f"principal=User:{ALICE_DN}")


def test_kcat_over_ssl_and_mtls(tls_broker, pki):
    for listener, client in [(tls_broker.ssl, None), (tls_broker.mtls, "alice")]:
        topic = "tls-kcat-" + uuid.uuid4().hex[:6]
        create(tls_broker, topic)
        opts = ["-X", "security.protocol=ssl", "-X", f"ssl.ca.location={pki['ca']}"]
        if client:
            opts += ["-X", f"ssl.certificate.location={pki['alice_crt']}",
                     "-X", f"ssl.key.location={pki['alice_key']}"]
        lines = [f"kcat {i}" for i in range(50)]
        subprocess.run(["kcat", "-b", listener, *opts, "-P", "-t", topic], input="\n".join(lines) + "\n",
                       text=True, check=True, timeout=60)
        out = subprocess.run(["kcat", "-b", listener, *opts, "-C", "-t", topic, "-e", "-o", "beginning"],
                             capture_output=True, text=True, check=True, timeout=60).stdout
        assert out.splitlines() == lines


def test_java_console_tools_over_ssl_and_mtls(tls_broker, pki, tmp_path):
    producer, consumer = "org.apache.kafka.tools.ConsoleProducer", "org.apache.kafka.tools.consumer.ConsoleConsumer"
    for listener, client in [(tls_broker.ssl, None), (tls_broker.mtls, "alice")]:
        topic = "tls-java-" + uuid.uuid4().hex[:6]
        create(tls_broker, topic)
        props = tmp_path / f"client-{client}.properties"
        text = f"security.protocol=SSL\nssl.truststore.type=PEM\nssl.truststore.location={pki['ca']}\n"
        if client:
            text += f"ssl.keystore.type=PEM\nssl.keystore.location={pki['alice_pem']}\n"
        props.write_text(text)
        lines = [f"java {i} {uuid.uuid4().hex}" for i in range(20)]
        kafka_tool(producer, "--bootstrap-server", listener, "--topic", topic, "--command-config", props,
                   "--command-property", "acks=all", input="\n".join(lines) + "\n")
        out = kafka_tool(consumer, "--bootstrap-server", listener, "--topic", topic, "--command-config", props,
                         "--from-beginning", "--max-messages", str(len(lines)), "--timeout-ms", "60000")
        assert out.stdout.splitlines() == lines


def test_kafka_python_over_mtls(tls_broker, pki):
    from kafka import KafkaConsumer, KafkaProducer

    topic = "tls-kp-" + uuid.uuid4().hex[:6]
    create(tls_broker, topic)
    tls = dict(security_protocol="SSL", ssl_cafile=pki["ca"], ssl_certfile=pki["alice_crt"],
               ssl_keyfile=pki["alice_key"])
    p = KafkaProducer(bootstrap_servers=tls_broker.mtls, acks="all", **tls)
    for i in range(N):
        p.send(topic, value=f"kp{i}".encode())
    p.flush(30)
    p.close()
    c = KafkaConsumer(topic, bootstrap_servers=tls_broker.mtls, auto_offset_reset="earliest",
                      consumer_timeout_ms=20000, **tls)
    got = []
    for m in c:
        got.append(m.value.decode())
        if len(got) == N:
            break
    c.close()
    assert got == [f"kp{i}" for i in range(N)]


def test_spate_cli_over_mtls_with_a_command_config(tls_broker, pki, tmp_path):
    props = tmp_path / "cli.properties"
    props.write_text(f"security.protocol=SSL\nssl.truststore.location={pki['ca']}\n"
                     f"ssl.keystore.location={pki['alice_pem']}\n")
    topic = "tls-cli-" + uuid.uuid4().hex[:6]

    def spate(*args, input=None):
        return subprocess.run([str(SPATE_BIN), *args, "--brokers", tls_broker.mtls, "--command-config", str(props)],
                              input=input, capture_output=True, text=True, timeout=60)

    made = spate("topic", "create", topic, "--partitions", "2")
    assert made.returncode == 0, made.stderr
    sent = spate("produce", topic, input="a\nb\nc\n")
    assert sent.returncode == 0, sent.stderr
    got = spate("consume", topic, "--from-beginning", "--max", "3", "--timeout-ms", "30000")
    assert got.returncode == 0, got.stderr
    assert sorted(got.stdout.split()) == ["a", "b", "c"]


def test_metadata_advertises_the_listener_the_client_came_in_on(tls_broker, pki):
    from confluent_kafka.admin import AdminClient

    def brokers(bootstrap, conf):
        md = AdminClient({"bootstrap.servers": bootstrap, **conf}).list_topics(timeout=20)
        return sorted((b.host, b.port) for b in md.brokers.values())

    plain_port = tls_broker.port
    assert brokers(tls_broker.bootstrap, {}) == [("127.0.0.1", plain_port)]
    ssl_port = int(tls_broker.ssl.rsplit(":", 1)[1])
    assert brokers(tls_broker.ssl, ssl_conf(pki)) == [("localhost", ssl_port)]
    mtls_port = int(tls_broker.mtls.rsplit(":", 1)[1])
    assert brokers(tls_broker.mtls, ssl_conf(pki, "alice")) == [("127.0.0.1", mtls_port)]


def _tls_socket(address, cafile, cert=None, key=None):
    host, port = address.rsplit(":", 1)
    ctx = ssl.create_default_context(cafile=cafile)
    if cert:
        ctx.load_cert_chain(cert, key)
    raw = socket.create_connection((host, int(port)), timeout=10)
    return ctx.wrap_socket(raw, server_hostname="localhost")


def _api_versions_over(sock) -> bytes:
    """Sends ApiVersions v0; returns the reply frame's bytes (b'' when the broker closed)."""
    sock.sendall(w.i32(len(h := w.request_header(w.API_VERSIONS, 0, 1))) + h)
    got = b""
    try:
        while len(got) < 4 or len(got) < 4 + int.from_bytes(got[:4], "big"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            got += chunk
    except (ssl.SSLError, ConnectionResetError, BrokenPipeError):
        return b""
    return got


def test_wrong_ca_and_bad_client_certificates_are_refused_and_the_broker_is_unaffected(tls_broker, pki):
    # The client does not trust the broker's CA.
    with pytest.raises(ssl.SSLCertVerificationError):
        _tls_socket(tls_broker.ssl, pki["other_ca"])
    # No client certificate on the mTLS listener, then one from a CA the broker does not trust.
    for cert, key in [(None, None), (pki["mallory_crt"], pki["mallory_key"])]:
        try:
            s = _tls_socket(tls_broker.mtls, pki["ca"], cert, key)
        except (ssl.SSLError, ConnectionResetError):
            continue  # refused during the handshake (TLS 1.2)
        with s:  # TLS 1.3: the client finishes first; the broker's alert ends it
            assert _api_versions_over(s) == b""
    # A good client on the same listener is served.
    with _tls_socket(tls_broker.mtls, pki["ca"], pki["alice_crt"], pki["alice_key"]) as s:
        assert len(_api_versions_over(s)) > 8
    metrics = urllib.request.urlopen(tls_broker.admin_url + "/metrics", timeout=10).read().decode()
    failures = [ln for ln in metrics.splitlines()
                if ln.startswith('spate_tls_handshake_failures_total{listener="MTLS"}')]
    assert failures and float(failures[0].split()[-1]) >= 2, failures
    assert tls_broker.alive()


def test_plaintext_on_a_tls_port_and_tls_on_a_plaintext_port_are_closed_not_hung(tls_broker, pki):
    host, port = tls_broker.ssl.rsplit(":", 1)
    started = time.monotonic()
    with w.Conn(host, int(port)) as c:
        c.send_frame(w.request_header(w.API_VERSIONS, 0, 1))
        c.expect_closed(timeout=5)
    ctx = ssl.create_default_context(cafile=pki["ca"])
    raw = socket.create_connection(("127.0.0.1", tls_broker.port), timeout=5)
    with pytest.raises((ssl.SSLError, ConnectionResetError, OSError)):
        ctx.wrap_socket(raw, server_hostname="localhost")
    raw.close()
    assert time.monotonic() - started < 8
    # A client that connects to the TLS port and says nothing is closed after the handshake bound.
    with w.Conn(host, int(port)) as c:
        c.expect_closed(timeout=HANDSHAKE_TIMEOUT_S + 5)
    with _tls_socket(tls_broker.ssl, pki["ca"]) as s:
        assert len(_api_versions_over(s)) > 8


def test_a_tls_listener_without_a_keystore_refuses_to_start(tmp_path):
    out = subprocess.run(
        [str(SPATE_BIN), "start", "--data-dir", str(tmp_path / "d"), "--admin-listen", "none",
         "--set", f"listeners=SSL://127.0.0.1:{free_port()}", "--set", "inter.broker.listener.name=SSL"],
        capture_output=True, text=True, timeout=30)
    assert out.returncode != 0
    assert "listener SSL" in out.stderr and "ssl.keystore.location" in out.stderr, out.stderr
