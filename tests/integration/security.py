"""What the security tests (issue 19: test_tls, test_sasl, test_sasl_ssl, test_oauth) share: a
test PKI, the PLAIN users' JAAS text, brokers with extra listeners, Kafka client properties
files, kcat's security flags, the SASL exchange on the wire and the SASL metrics."""

from __future__ import annotations

import datetime
import ipaddress
import ssl
import subprocess
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

import kafka_wire as w
from conftest import SPATE_BIN, Broker, free_port

# PLAIN users of a SASL listener: admin and alice.
JAAS = ('org.apache.kafka.common.security.plain.PlainLoginModule required '
        'username="admin" password="admin-secret" user_admin="admin-secret" user_alice="alice-secret";')

SASL_HANDSHAKE, SASL_AUTHENTICATE = 17, 36
# Kafka's console tools (helpers.kafka_tool runs them).
PRODUCER = "org.apache.kafka.tools.ConsoleProducer"
CONSUMER = "org.apache.kafka.tools.consumer.ConsoleConsumer"
PLAIN_MODULE = "org.apache.kafka.common.security.plain.PlainLoginModule"
SCRAM_MODULE = "org.apache.kafka.common.security.scram.ScramLoginModule"


# --- the PKI --------------------------------------------------------------------------------------
ALICE = {"C": "US", "O": "Acme, Inc.", "OU": "eng", "CN": "alice"}


def make_pki(root: Path, clients: dict | None = None, servers: tuple = ("server",),
             nodes: dict | None = None) -> dict:
    """A CA (`ca`) signing a server certificate for localhost and 127.0.0.1 per stem of
    `servers` (`server_*`, and `server_pem`: Kafka's PEM keystore, key and chain in one file;
    each its own key) and a client certificate per
    entry of `clients` (stem: subject attributes C, O, OU, CN; default alice, subject
    C=US,O=Acme\\, Inc.,OU=eng,CN=alice: `alice_crt`, `alice_key`, `alice_pem`); another CA
    (`other_ca`) signing mallory's. `nodes` (stem: (subject, "ca" or "other-ca")): a node's
    certificate for both ends of a connection between nodes (server and client auth, localhost
    and 127.0.0.1), `<stem>_pem`. Paths by name."""
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
            b = b.add_extension(x509.ExtendedKeyUsage(usage if isinstance(usage, list) else [usage]),
                                critical=False)
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
    server_paths = {}
    for stem in servers:
        server_key = new_key()
        server = issue(name(CN="localhost"), server_key, ca_cert.subject, ca_key,
                       usage=ExtendedKeyUsageOID.SERVER_AUTH,
                       sans=[x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
        write(stem, server, server_key)
        # Kafka's PEM keystore file: the key and the chain in one file.
        (root / f"{stem}.pem").write_bytes((root / f"{stem}.key").read_bytes() + (root / f"{stem}.crt").read_bytes())
        server_paths.update({f"{stem}_{ext}": str(root / f"{stem}.{ext}") for ext in ("crt", "key", "pem")})
    client_paths = {}
    for stem, subject in (clients or {"alice": ALICE}).items():
        client_key = new_key()
        client = issue(name(**subject), client_key, ca_cert.subject, ca_key,
                       usage=ExtendedKeyUsageOID.CLIENT_AUTH)
        write(stem, client, client_key)
        (root / f"{stem}.pem").write_bytes((root / f"{stem}.key").read_bytes() + (root / f"{stem}.crt").read_bytes())
        client_paths.update({f"{stem}_{ext}": str(root / f"{stem}.{ext}") for ext in ("crt", "key", "pem")})
    other_cert, other_key = files["other-ca"]
    mallory_key = new_key()
    mallory = issue(name(CN="mallory"), mallory_key, other_cert.subject, other_key,
                    usage=ExtendedKeyUsageOID.CLIENT_AUTH)
    write("mallory", mallory, mallory_key)
    for stem, (subject, ca_stem) in (nodes or {}).items():
        issuer, issuer_key = files[ca_stem]
        node_key = new_key()
        node = issue(name(**subject), node_key, issuer.subject, issuer_key,
                     usage=[ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH],
                     sans=[x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
        write(stem, node, node_key)
        (root / f"{stem}.pem").write_bytes((root / f"{stem}.key").read_bytes() + (root / f"{stem}.crt").read_bytes())
        client_paths[f"{stem}_pem"] = str(root / f"{stem}.pem")
    return {
        "ca": str(root / "ca.crt"), "other_ca": str(root / "other-ca.crt"),
        **server_paths,
        **client_paths,
        "mallory_crt": str(root / "mallory.crt"), "mallory_key": str(root / "mallory.key"),
    }


STORE_PASSWORD = "store-secret"
KEY_PASSWORD = "key-secret"


def make_stores(pki: dict, stem: str = "server") -> dict:
    """Kafka's other store formats of `stem`'s key and chain (and of the CA), made by the tools
    operators use, beside the PEM files: `{stem}_p12` (openssl pkcs12, STORE_PASSWORD),
    `{stem}_jks` (keytool, STORE_PASSWORD, the key under KEY_PASSWORD), `{stem}_enc_key` (an
    encrypted PKCS#8 PEM key and its chain, KEY_PASSWORD), `ca_p12` (a PKCS12 truststore made by
    keytool, STORE_PASSWORD). Paths by name."""
    crt, key = Path(pki[f"{stem}_crt"]), Path(pki[f"{stem}_key"])
    root = crt.parent
    out = {f"{stem}_p12": root / f"{stem}.p12", f"{stem}_jks": root / f"{stem}.jks",
           f"{stem}_enc_key": root / f"{stem}-encrypted.pem", "ca_p12": root / "ca-trust.p12"}

    def run(*args):
        p = subprocess.run(args, capture_output=True, text=True, timeout=60)
        assert p.returncode == 0, f"{args[0]}: {p.stderr}"

    run("openssl", "pkcs12", "-export", "-in", str(crt), "-inkey", str(key), "-certfile", pki["ca"],
        "-name", stem, "-passout", f"pass:{STORE_PASSWORD}", "-out", str(out[f"{stem}_p12"]))
    run("keytool", "-importkeystore", "-noprompt", "-srckeystore", str(out[f"{stem}_p12"]),
        "-srcstoretype", "PKCS12", "-srcstorepass", STORE_PASSWORD, "-srcalias", stem,
        "-destkeystore", str(out[f"{stem}_jks"]), "-deststoretype", "JKS",
        "-deststorepass", STORE_PASSWORD, "-destkeypass", KEY_PASSWORD)
    encrypted = root / f"{stem}-key-encrypted.pem"
    run("openssl", "pkcs8", "-topk8", "-v2", "aes-256-cbc", "-in", str(key),
        "-passout", f"pass:{KEY_PASSWORD}", "-out", str(encrypted))
    out[f"{stem}_enc_key"].write_bytes(encrypted.read_bytes() + crt.read_bytes())
    run("keytool", "-importcert", "-noprompt", "-alias", "ca", "-file", pki["ca"],
        "-keystore", str(out["ca_p12"]), "-storetype", "PKCS12", "-storepass", STORE_PASSWORD)
    return {name: str(path) for name, path in out.items()}


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_pki(tmp_path_factory.mktemp("pki"))


class HttpsJson:
    """An HTTPS server on loopback (certificate `pki["server_crt"]`, for localhost and
    127.0.0.1) answering every GET with the JSON document `document` (which a test may
    replace), counting the GETs; a context manager that stops it (`stop()` earlier)."""

    def __init__(self, pki: dict, document: str):
        import http.server
        import threading

        self.document, self.gets = document, 0
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's name)
                outer.gets += 1
                body = outer.document.encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        port = free_port()
        self.url = f"https://127.0.0.1:{port}/.well-known/jwks.json"
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(pki["server_crt"], pki["server_key"])
        self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self):
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join(10)
        self._server.server_close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


# --- brokers --------------------------------------------------------------------------------------
def with_listeners(broker: Broker, **listeners: tuple) -> Broker:
    """Gives a broker that is not started more listeners: `attr=(NAME, PROTOCOL[, PORT])` binds
    listener NAME, of security protocol PROTOCOL, on loopback (a free port unless given) and
    keeps its address in `broker.<attr>`. The broker's own port stays a PLAINTEXT listener
    (`bootstrap`: setup)."""
    entries, protocols = [f"PLAINTEXT://{broker.bootstrap}"], ["PLAINTEXT:PLAINTEXT"]
    for attr, (name, protocol, *port) in listeners.items():
        address = f"127.0.0.1:{port[0] if port else free_port()}"
        setattr(broker, attr, address)
        entries.append(f"{name}://{address}")
        protocols.append(f"{name}:{protocol}")
    broker.settings.update({"listeners": ",".join(entries),
                            "listener.security.protocol.map": ",".join(protocols)})
    return broker


@pytest.fixture
def secure_brokers(request):
    """start(prefix, listeners, settings=None) -> a running broker with `with_listeners(**listeners)`
    and `settings`; each is stopped after the test, its log tail printed if the test failed."""
    made = []

    def start(prefix: str, listeners: dict, settings: dict | None = None) -> Broker:
        b = with_listeners(Broker(f"{prefix}-{uuid.uuid4().hex[:6]}"), **listeners)
        b.settings.update(settings or {})
        made.append(b)
        return b.start()

    yield start
    failed = getattr(request.node, "rep_call", None) and request.node.rep_call.failed
    for b in made:
        if failed:
            print(b.log_tail())
        b.cleanup(bool(failed))


def spate_cli(broker, *args):
    """`spate ARGS --brokers <the PLAINTEXT listener>`; its stdout (it must succeed)."""
    p = subprocess.run([str(SPATE_BIN), *args, "--brokers", broker.bootstrap],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    return p.stdout


# --- clients --------------------------------------------------------------------------------------
def client_properties(path: Path, protocol: str, *, truststore=None, keystore=None, mechanism=None,
                      user=None, password=None, pem_types=True) -> Path:
    """A Kafka client properties file (Kafka's tools' and `spate`'s --command-config): TLS
    trusting `truststore` (and presenting `keystore`, key and chain in one PEM file), SASL with
    `mechanism` and a JAAS line for `user`. `pem_types`: say `ssl.*.type=PEM`, as the Java
    client needs (Spate's client assumes it)."""
    lines = [f"security.protocol={protocol}"]
    if truststore:
        lines += ["ssl.truststore.type=PEM"] if pem_types else []
        lines.append(f"ssl.truststore.location={truststore}")
    if keystore:
        lines += ["ssl.keystore.type=PEM"] if pem_types else []
        lines.append(f"ssl.keystore.location={keystore}")
    if mechanism:
        module = PLAIN_MODULE if mechanism == "PLAIN" else SCRAM_MODULE
        lines += [f"sasl.mechanism={mechanism}",
                  f'sasl.jaas.config={module} required username="{user}" password="{password}";']
    path.write_text("\n".join(lines) + "\n")
    return path


def ssl_conf(pki, client=None):
    """librdkafka's SSL settings trusting the test CA (and presenting `client`'s certificate)."""
    conf = {"security.protocol": "SSL", "ssl.ca.location": pki["ca"]}
    if client:
        conf |= {"ssl.certificate.location": pki[f"{client}_crt"], "ssl.key.location": pki[f"{client}_key"]}
    return conf


def confluent_round_trip(bootstrap, conf, topic, n=200):
    """confluent-kafka produces `n` records to `topic` (acks=all) and a new group consumes them."""
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


def kcat_security(protocol, *, ca=None, cert=None, key=None, mechanism=None, user=None, password=None):
    """kcat's (librdkafka's) -X flags for a security protocol."""
    flags = ["-X", f"security.protocol={protocol}"]
    if ca:
        flags += ["-X", f"ssl.ca.location={ca}"]
    if cert:
        flags += ["-X", f"ssl.certificate.location={cert}", "-X", f"ssl.key.location={key}"]
    if mechanism:
        flags += ["-X", f"sasl.mechanisms={mechanism}", "-X", f"sasl.username={user}",
                  "-X", f"sasl.password={password}"]
    return flags


# --- SASL on the wire and its metrics ---------------------------------------------------------------
def handshake(conn, mechanism, version=1):
    """SaslHandshake: (error, enabled mechanisms)."""
    body = w.string(mechanism)
    r = conn.request(SASL_HANDSHAKE, version, body)
    error = r.i16()
    mechanisms = [r.string() for _ in range(r.i32())]
    return error, mechanisms


def authenticate_v1(conn, auth: bytes):
    """SaslAuthenticate v1: (error, message, auth bytes, session lifetime ms)."""
    r = conn.request(SASL_AUTHENTICATE, 1, w.bytes_(auth))
    return r.i16(), r.string(), r.bytes_(), r.i64()


def _metric(broker, key: str) -> float:
    text = urllib.request.urlopen(broker.admin_url + "/metrics", timeout=10).read().decode()
    for line in text.splitlines():
        if line.startswith(key):
            return float(line.split()[-1])
    raise AssertionError(f"{key} not in /metrics")


def metric(broker, mechanism, result) -> float:
    """spate_sasl_authentications_total of a mechanism and result (success, failure)."""
    return _metric(broker, f'spate_sasl_authentications_total{{mechanism="{mechanism}",result="{result}"}}')


def reauth_metric(broker, mechanism) -> float:
    return _metric(broker, f'spate_sasl_reauthentications_total{{mechanism="{mechanism}"}}')


def expired_closed(broker) -> float:
    return _metric(broker, "spate_sasl_expired_sessions_closed_total ")


def api_versions_over(sock) -> bytes:
    """Sends ApiVersions v0 over `sock`; returns the reply frame's bytes (b'' when the broker
    closed the connection)."""
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
