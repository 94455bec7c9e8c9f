"""Between nodes (issue 19): brokers register every listener, so a client is told each broker's
address on the listener it came in on; the inter-broker listener can be SSL with client
certificates required, followers fetching over TLS with the broker's own keystore, their
principal its certificate's subject; or SASL_SSL / SASL_PLAINTEXT, followers authenticating with
`sasl.mechanism.inter.broker.protocol` and the listener's JAAS credentials, their principal the
SASL user. Real 3-node clusters, real clients (confluent-kafka, the `spate` CLI)."""

from __future__ import annotations

import datetime
import ipaddress
import os
import socket
import ssl
import time
from pathlib import Path

import pytest

import kafka_wire as w
from cluster_faults import Cluster, ClusterNode, wait_for
from conftest import free_port
from helpers import create_topic, poll_values

BROKER_DN = "CN=spate-broker,O=spate"
N = 60


# --- a CA and one certificate every broker uses (server and client) ---------------------------
def _pki(root: Path) -> dict:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.timezone.utc)

    def issue(subject, key, issuer, issuer_key, ca, extensions=()):
        b = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer)
             .public_key(key.public_key()).serial_number(x509.random_serial_number())
             .not_valid_before(now - datetime.timedelta(hours=1))
             .not_valid_after(now + datetime.timedelta(days=2))
             .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        for ext in extensions:
            b = b.add_extension(ext, critical=False)
        return b.sign(issuer_key, hashes.SHA256())

    pem = serialization.Encoding.PEM
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "spate internode test ca")])
    ca = issue(ca_name, ca_key, ca_name, ca_key, True,
               [x509.KeyUsage(False, False, False, False, False, True, True, False, False)])
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "spate"),
                      x509.NameAttribute(NameOID.COMMON_NAME, "spate-broker")])
    cert = issue(name, key, ca_name, ca_key, False, [
        x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
        x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                     x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
    ])
    (root / "ca.crt").write_bytes(ca.public_bytes(pem))
    key_pem = key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    (root / "broker.pem").write_bytes(key_pem + cert.public_bytes(pem))
    return {"ca": str(root / "ca.crt"), "broker_pem": str(root / "broker.pem")}


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return _pki(tmp_path_factory.mktemp("internode-pki"))


@pytest.fixture
def start_nodes(request):
    """start(settings_of(node_id, ports) -> dict, n=3) -> a running Cluster of combined nodes,
    each with its own settings; every node is killed after the test."""
    made: list[ClusterNode] = []

    def start(settings_of, n=3) -> Cluster:
        quorum = {i: free_port() for i in range(1, n + 1)}
        nodes = []
        for i in range(1, n + 1):
            node = ClusterNode(i, quorum)
            node.settings.update(settings_of(node))
            nodes.append(node)
            made.append(node)
        for node in nodes:
            node.spawn()
        for node in nodes:
            node.await_ready()
        return Cluster(nodes)

    yield start
    failed = getattr(request.node, "rep_call", None) is not None and request.node.rep_call.failed
    Cluster(made).close(keep=failed or bool(os.environ.get("SPATE_IT_KEEP")), show_logs=failed)


def ssl_conf(pki):
    return {"security.protocol": "SSL", "ssl.ca.location": pki["ca"]}


def brokers_seen(bootstrap, conf):
    from confluent_kafka.admin import AdminClient

    md = AdminClient({"bootstrap.servers": bootstrap, **conf}).list_topics(timeout=20)
    return sorted((b.id, b.host, b.port) for b in md.brokers.values())


def produce_all(bootstrap, conf, topic, partitions, n=N):
    """n records to each partition with acks=all; {partition: offsets acknowledged}."""
    from confluent_kafka import Producer

    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True,
                  "message.timeout.ms": 30000, **conf})
    acked, errors = {}, []

    def done(err, msg):
        if err:
            errors.append(err)
        else:
            acked.setdefault(msg.partition(), []).append(msg.offset())

    for i in range(n):
        for part in range(partitions):
            p.produce(topic, value=f"v{i}".encode(), partition=part, on_delivery=done)
    assert p.flush(40) == 0 and not errors, errors
    return acked


# --- 1. registrations carry every listener ----------------------------------------------------
@pytest.mark.spate_only("a multi-node cluster (the reference run has one Kafka node)")
def test_a_client_on_ssl_is_told_every_brokers_ssl_address_and_produces_to_their_partitions(
        start_nodes, pki):
    ssl_ports = {}

    def settings(node):
        ssl_ports[node.node_id] = free_port()
        return {
            "listeners": f"PLAINTEXT://127.0.0.1:{node.port},SSL://127.0.0.1:{ssl_ports[node.node_id]}",
            "advertised.listeners": f"SSL://localhost:{ssl_ports[node.node_id]}",
            "ssl.keystore.location": pki["broker_pem"],
        }

    cluster = start_nodes(settings)
    node1 = cluster.node(1)
    ssl1 = f"localhost:{ssl_ports[1]}"
    assert brokers_seen(ssl1, ssl_conf(pki)) == [(i, "localhost", ssl_ports[i]) for i in (1, 2, 3)]
    plain = [(n.node_id, "127.0.0.1", n.port) for n in cluster.brokers]
    assert brokers_seen(node1.bootstrap, {}) == plain

    create_topic(node1.bootstrap, "spread", 3, replication_factor=1)
    parts = wait_for("3 leaders", lambda: (lambda ps: ps if len(ps) == 3 and all(
        m.leader > 0 for m in ps.values()) else None)(cluster.partitions("spread")))
    assert {m.leader for m in parts.values()} == {1, 2, 3}, parts
    # The producer bootstraps from node 1's SSL listener only, and reaches the leaders on 2
    # and 3 at their SSL addresses.
    acked = produce_all(ssl1, ssl_conf(pki), "spread", 3)
    assert {p: len(o) for p, o in acked.items()} == {0: N, 1: N, 2: N}

    # FindCoordinator answers the coordinator's address on the client's listener too.
    conn = tls_conn(ssl_ports[1], pki["ca"])
    try:
        found = wait_for("a coordinator", lambda: (
            lambda r: r if r[0] == 0 else None)(w.find_coordinator_v1(conn, "g1")), timeout=30)
    finally:
        conn.close()
    _, node_id, host, port = found
    assert (host, port) == ("localhost", ssl_ports[node_id])


def tls_conn(port, cafile) -> w.Conn:
    """A raw Kafka connection over TLS to 127.0.0.1:`port` (certificate checked for localhost)."""
    conn = w.Conn.__new__(w.Conn)
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    conn.sock = ssl.create_default_context(cafile=cafile).wrap_socket(raw, server_hostname="localhost")
    conn.corr = 0
    return conn


# --- 2. TLS with client certificates between brokers -------------------------------------------
@pytest.mark.spate_only("a multi-node cluster (the reference run has one Kafka node)")
def test_an_mtls_inter_broker_listener_replicates_and_survives_a_leader_kill(start_nodes, pki, monkeypatch):
    monkeypatch.setenv("SPATE_LOG", "info,broker::transport=debug")

    def settings(node):
        internal = free_port()
        return {
            "listeners": f"PLAINTEXT://127.0.0.1:{node.port},INTERNAL://127.0.0.1:{internal}",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,INTERNAL:SSL",
            "inter.broker.listener.name": "INTERNAL",
            "listener.name.internal.ssl.keystore.location": pki["broker_pem"],
            "listener.name.internal.ssl.truststore.location": pki["ca"],
            "listener.name.internal.ssl.client.auth": "required",
            # Followers need ClusterAction: only the brokers' certificate has it.
            "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
            "super.users": f"User:{BROKER_DN};User:ANONYMOUS",
        }

    cluster = start_nodes(settings)
    create_topic(cluster.node(1).bootstrap, "mtls", 1, replication_factor=3)
    cluster.wait_full_isr("mtls", 1, rf=3)
    before = cluster.state("mtls", 0)
    leader = cluster.node(before.leader)
    # The leader's followers came in over TLS as the brokers' certificate.
    leader.wait_for_log(f"principal=User:{BROKER_DN}", timeout=20)
    acked = produce_all(cluster.bootstrap(), {}, "mtls", 1)
    assert len(acked[0]) == N

    cluster.kill(before.leader)
    cluster.wait_new_leader("mtls", 0, before)
    survivors = cluster.bootstrap(exclude=(before.leader,))
    more = produce_all(survivors, {}, "mtls", 1)
    assert len(more[0]) == N and min(more[0]) >= N, more
    # Everything acknowledged is there on the new leader.
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer({"bootstrap.servers": survivors, "group.id": "check", "enable.auto.commit": False})
    c.assign([TopicPartition("mtls", 0, 0)])
    got = []
    deadline = time.monotonic() + 30
    while len(got) < 2 * N and time.monotonic() < deadline:
        m = c.poll(0.5)
        if m is not None and m.error() is None:
            got.append(m.offset())
    c.close()
    assert got == list(range(2 * N))


# --- 3. SASL between brokers -------------------------------------------------------------------
PLAIN_MODULE = "org.apache.kafka.common.security.plain.PlainLoginModule"
SCRAM_MODULE = "org.apache.kafka.common.security.scram.ScramLoginModule"
AUTHORIZER = "org.apache.kafka.metadata.authorizer.StandardAuthorizer"


def sasl_internal(node, protocol, mechanism, jaas, extra=None) -> dict:
    """PLAINTEXT for clients (User:ANONYMOUS, a super user) and INTERNAL (`protocol`) for
    replication with `mechanism`, the broker's credentials in `jaas`; an authorizer on, so a
    follower fetches only with ClusterAction."""
    internal = free_port()
    return {
        "listeners": f"PLAINTEXT://127.0.0.1:{node.port},INTERNAL://127.0.0.1:{internal}",
        "listener.security.protocol.map": f"PLAINTEXT:PLAINTEXT,INTERNAL:{protocol}",
        "inter.broker.listener.name": "INTERNAL",
        "sasl.mechanism.inter.broker.protocol": mechanism,
        "listener.name.internal.sasl.enabled.mechanisms": mechanism,
        f"listener.name.internal.{mechanism.lower()}.sasl.jaas.config": jaas,
        "authorizer.class.name": AUTHORIZER,
        "super.users": "User:ANONYMOUS",
        **(extra or {}),
    }


def spate(node, *args):
    from conftest import SPATE_BIN
    import subprocess

    out = subprocess.run([str(SPATE_BIN), *args, "--brokers", node.bootstrap],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout


def grant_cluster_action(bootstrap, principal):
    from confluent_kafka.admin import AclBinding, AclOperation, AclPermissionType, AdminClient
    from confluent_kafka.admin import ResourcePatternType, ResourceType

    binding = AclBinding(ResourceType.BROKER, "kafka-cluster", ResourcePatternType.LITERAL, principal, "*",
                         AclOperation.CLUSTER_ACTION, AclPermissionType.ALLOW)
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for fut in admin.create_acls([binding], request_timeout=30).values():
        fut.result(30)


def log_positions(node, topic, partition, values) -> list[int]:
    """Where each value lies in the node's segment files of the partition, in file order
    (records are stored verbatim, uncompressed here); -1 for a value it lacks."""
    part = node.data_dir / f"{topic}-{partition}"
    data = b"".join(p.read_bytes() for p in sorted(part.glob("*.log")))
    return [data.find(v) for v in values]


@pytest.mark.spate_only("a multi-node cluster (the reference run has one Kafka node)")
def test_replication_over_sasl_ssl_with_scram_runs_as_the_broker_user_and_every_replica_holds_the_records(
        start_nodes, pki, monkeypatch):
    monkeypatch.setenv("SPATE_LOG", "info,broker::sasl=debug")
    jaas = f'{SCRAM_MODULE} required username="broker" password="broker-secret";'
    cluster = start_nodes(lambda node: sasl_internal(node, "SASL_SSL", "SCRAM-SHA-512", jaas, {
        "listener.name.internal.ssl.keystore.location": pki["broker_pem"],
        "listener.name.internal.ssl.truststore.location": pki["ca"],
    }))
    node1 = cluster.node(1)
    # The brokers' SCRAM user is metadata like any other, and only it may replicate.
    spate(node1, "user", "add", "broker", "--password", "broker-secret", "--mechanism", "SCRAM-SHA-512")
    grant_cluster_action(node1.bootstrap, "User:broker")

    topic = "sasl-repl"
    create_topic(node1.bootstrap, topic, 1, replication_factor=3)
    state = cluster.wait_full_isr(topic, 1, rf=3, timeout=60)[0]
    values = [f"{topic}-{i}-{uuid_hex()}".encode() for i in range(N)]
    from confluent_kafka import Producer

    p = Producer({"bootstrap.servers": cluster.bootstrap(), "acks": "all", "enable.idempotence": True,
                  "message.timeout.ms": 30000})
    errors = []
    for v in values:
        p.produce(topic, value=v, partition=0, on_delivery=lambda err, msg: err and errors.append(err))
    assert p.flush(40) == 0 and not errors, errors
    # acks=all: durable on every ISR member before the answer, so on disk on all three now,
    # in the same order.
    for node_id in state.replicas:
        found = log_positions(cluster.node(node_id), topic, 0, values)
        assert -1 not in found and found == sorted(found), (node_id, found[:5])
    assert sorted(cluster.state(topic, 0).isr) == [1, 2, 3]
    leader = cluster.node(state.leader)
    log = leader.wait_for_log("SASL authentication succeeded", timeout=20)
    assert any("user=broker" in line and "SCRAM-SHA-512" in line
               for line in log.splitlines() if "SASL authentication succeeded" in line)


def uuid_hex() -> str:
    import uuid

    return uuid.uuid4().hex[:8]


@pytest.mark.spate_only("a multi-node cluster and Spate's log lines")
def test_wrong_inter_broker_credentials_leave_that_follower_out_with_a_clear_log_line(start_nodes):
    users = 'user_broker="right-secret"'

    def jaas(password):
        return f'{PLAIN_MODULE} required username="broker" password="{password}" {users};'

    def settings(node):
        password = "wrong-secret" if node.node_id == 3 else "right-secret"
        return sasl_internal(node, "SASL_PLAINTEXT", "PLAIN", jaas(password),
                             {"replica.lag.time.max.ms": 3000})

    cluster = start_nodes(settings)
    node1, node3 = cluster.node(1), cluster.node(3)
    grant_cluster_action(node1.bootstrap, "User:broker")
    topic = "sasl-wrong"
    create_topic(node1.bootstrap, topic, 3, replication_factor=3)
    # Node 3 follows the partitions 1 and 2 lead, and cannot fetch: it says why, once.
    log = node3.wait_for_log("replica fetch: cannot connect to the leader", timeout=30)
    line = next(ln for ln in log.splitlines() if "replica fetch: cannot connect to the leader" in ln)
    assert "WARN" in line and "SASL PLAIN authentication" in line and "SaslAuthenticationFailed" in line, line
    # The broker's own lines never carry a password (the harness's "=====" line has its argv).
    said = "\n".join(ln for ln in log.splitlines() if not ln.startswith("====="))
    assert "wrong-secret" not in said and "right-secret" not in said
    # The leaders drop it from their ISRs; acks=all goes on without it; it stays up.
    def shrunk():
        parts = cluster.partitions(topic)
        led_elsewhere = [m for m in parts.values() if m.leader in (1, 2)]
        return led_elsewhere and all(3 not in m.isr for m in led_elsewhere) and parts

    wait_for("node 3 out of the ISRs it cannot fetch for", shrunk, timeout=30)
    acked = produce_all(cluster.bootstrap(), {}, topic, 3, n=10)
    assert {p: len(o) for p, o in acked.items()} == {0: 10, 1: 10, 2: 10}
    assert node3.alive()


@pytest.mark.spate_only("a multi-node cluster and Spate's /metrics")
@pytest.mark.solo("replicates across several 3 s SASL session lifetimes on the wall clock")
def test_followers_reauthenticate_their_sasl_sessions_and_replication_carries_on(start_nodes):
    """KIP-368 between brokers: with connections.max.reauth.ms on the inter-broker listener,
    each follower re-authenticates its fetch connection before the session expires (at 85-95 %
    of it, between two fetches), as Kafka's followers do; no connection is closed for an
    expired session and the ISRs keep every replica."""
    from metrics_scrape import scrape

    jaas = f'{PLAIN_MODULE} required username="broker" password="broker-secret" user_broker="broker-secret";'
    cluster = start_nodes(lambda node: sasl_internal(node, "SASL_PLAINTEXT", "PLAIN", jaas, {
        "listener.name.internal.connections.max.reauth.ms": 3000}))
    node1 = cluster.node(1)
    grant_cluster_action(node1.bootstrap, "User:broker")
    topic = "sasl-reauth"
    create_topic(node1.bootstrap, topic, 3, replication_factor=3)
    cluster.wait_full_isr(topic, 3, rf=3, timeout=60)

    def counts():
        return {n.node_id: (scrape(n).value("spate_sasl_reauthentications_total", mechanism="PLAIN"),
                            scrape(n).value("spate_sasl_expired_sessions_closed_total"))
                for n in cluster.brokers}

    before = counts()
    from confluent_kafka import Consumer, Producer

    p = Producer({"bootstrap.servers": cluster.bootstrap(), "acks": "all", "enable.idempotence": True,
                  "message.timeout.ms": 30000})
    errors, sent = [], []
    deadline = time.monotonic() + 10  # over three session lifetimes
    while time.monotonic() < deadline:
        for part in range(3):
            value = f"r-{len(sent)}"
            p.produce(topic, value=value.encode(), partition=part,
                      on_delivery=lambda err, msg: err and errors.append(err))
            sent.append(value)
        p.poll(0.1)
    assert p.flush(40) == 0 and not errors, errors
    after = counts()
    for node_id in before:
        reauths = after[node_id][0] - before[node_id][0]
        # Two followers fetch from each leader; each re-authenticates every 2-3 s.
        assert reauths >= 4, (node_id, before, after)
        assert after[node_id][1] == before[node_id][1], ("expired sessions closed", node_id, after)
    for part, meta in cluster.partitions(topic).items():
        assert sorted(meta.isr) == [1, 2, 3], (part, meta)
    c = Consumer({"bootstrap.servers": cluster.bootstrap(), "group.id": "reauth-" + uuid_hex(),
                  "auto.offset.reset": "earliest"})
    c.subscribe([topic])
    try:
        got = poll_values(c, len(sent), 60)
    finally:
        c.close()
    assert sorted(got) == sorted(sent)


# --- 4. the controller port is bounded --------------------------------------------------------
CONTROLLER_CONNECTIONS_MAX = 256  # broker::cluster::admission::CONNECTIONS_MAX


def _closed_within(sock, seconds) -> bool:
    """Whether the peer closed `sock` (EOF or reset) within `seconds`."""
    sock.settimeout(seconds)
    try:
        return sock.recv(1) == b""
    except socket.timeout:
        return False
    except OSError:
        return True


@pytest.mark.spate_only("a multi-node cluster (the reference run has one Kafka node)")
def test_the_controller_port_closes_oversize_frames_and_extra_connections_and_keeps_working(start_nodes):
    cluster = start_nodes(lambda node: {})
    node1 = cluster.node(1)
    port = node1.quorum_port()

    # A frame announcing 4 GiB: closed before anything is allocated.
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall((0xFFFFFFF0).to_bytes(4, "little") + (0).to_bytes(4, "little"))
        assert _closed_within(s, 5)
    node1.wait_for_log("controller frame too large")
    # Garbage that fails its checksum: closed too.
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall((16).to_bytes(4, "little") + (1).to_bytes(4, "little") + b"x" * 16)
        assert _closed_within(s, 5)

    # More connections than the bound: the extra ones are closed at once.
    held = []
    try:
        for _ in range(CONTROLLER_CONNECTIONS_MAX + 20):
            held.append(socket.create_connection(("127.0.0.1", port), timeout=5))
        closed = [s for s in held[-30:] if _closed_within(s, 0.5)]
        assert closed, "no connection beyond the bound was closed"
        assert _closed_within(held[0], 0.2) is False, "an admitted connection was closed"
        node1.wait_for_log("controller port: too many connections")
    finally:
        for s in held:
            s.close()

    # The quorum kept working: a replicated topic is created and written.
    create_topic(node1.bootstrap, "after", 1, replication_factor=3)
    cluster.wait_full_isr("after", 1, rf=3)
    assert len(produce_all(cluster.bootstrap(), {}, "after", 1)[0]) == N
