"""SASL on a SASL_PLAINTEXT listener (issue 19): PLAIN users from the JAAS config, SCRAM users
from the metadata log, with real clients (librdkafka through confluent-kafka and kcat,
kafka-python, Kafka's own Java tools), and the refusals Kafka gives: a wrong password or an
unknown user gets SASL_AUTHENTICATION_FAILED and a closed connection, a request before
authentication a closed connection, an unsupported mechanism UNSUPPORTED_SASL_MECHANISM."""

from __future__ import annotations

import json
import subprocess
import time
import uuid

import pytest

import kafka_wire as w
from conftest import SPATE_BIN, free_port
from helpers import KAFKA_LIB, create_topic, kafka_tool, poll_values
from security import (CONSUMER, JAAS, PRODUCER, SASL_AUTHENTICATE, SASL_HANDSHAKE, authenticate_v1,
                      client_properties, expired_closed, handshake, kcat_security, metric, reauth_metric,
                      spate_cli)
from security import secure_brokers  # noqa: F401 (fixture)

CONFIGS = "kafka.admin.ConfigCommand"


@pytest.fixture
def sasl_broker(secure_brokers):
    """start(settings=None): a broker with a PLAINTEXT listener (`bootstrap`, for setup) and a
    SASL_PLAINTEXT one (`sasl`), PLAIN users admin and alice."""
    def start(settings: dict | None = None):
        return secure_brokers("sasl", {"sasl": ("SASL_PLAINTEXT", "SASL_PLAINTEXT")}, {
            "listener.name.sasl_plaintext.plain.sasl.jaas.config": JAAS,
            **(settings or {}),
        })

    return start


def sasl_conf(broker, mechanism, user, password):
    return {"bootstrap.servers": broker.sasl, "security.protocol": "SASL_PLAINTEXT",
            "sasl.mechanism": mechanism, "sasl.username": user, "sasl.password": password}


def confluent_round_trip(broker, topic, mechanism, user, password, n=20):
    from confluent_kafka import Consumer, Producer

    p = Producer({**sasl_conf(broker, mechanism, user, password), "acks": "all"})
    for i in range(n):
        p.produce(topic, value=f"{mechanism}-{i}".encode())
    assert p.flush(60) == 0
    c = Consumer({**sasl_conf(broker, mechanism, user, password), "group.id": "g-" + uuid.uuid4().hex[:6],
                  "auto.offset.reset": "earliest"})
    c.subscribe([topic])
    got = []
    try:
        import time
        deadline = time.monotonic() + 60
        while len(got) < n and time.monotonic() < deadline:
            m = c.poll(1.0)
            if m is not None and not m.error():
                got.append(m.value().decode())
    finally:
        c.close()
    assert got == [f"{mechanism}-{i}" for i in range(n)]


def kcat(broker, mechanism, user, password, *args, input=None):
    cmd = ["kcat", "-b", broker.sasl, *kcat_security("SASL_PLAINTEXT", mechanism=mechanism, user=user,
                                                     password=password), *args]
    return subprocess.run(cmd, input=input, capture_output=True, text=True, timeout=60)


def kafka_python_round_trip(broker, topic, mechanism, user, password, n=10):
    from kafka import KafkaConsumer, KafkaProducer

    auth = dict(bootstrap_servers=broker.sasl, security_protocol="SASL_PLAINTEXT",
                sasl_mechanism=mechanism, sasl_plain_username=user, sasl_plain_password=password)
    p = KafkaProducer(acks="all", **auth)
    for i in range(n):
        p.send(topic, f"kp-{i}".encode())
    p.flush(60)
    p.close()
    c = KafkaConsumer(topic, auto_offset_reset="earliest", consumer_timeout_ms=20000, **auth)
    got = [m.value.decode() for m in c][:n]
    c.close()
    assert got == [f"kp-{i}" for i in range(n)]


def java_round_trip(broker, tmp_path, topic, mechanism, user, password, n=5):
    props = client_properties(tmp_path / f"client-{mechanism}.properties", "SASL_PLAINTEXT",
                              mechanism=mechanism, user=user, password=password)
    lines = [f"java-{mechanism}-{i}" for i in range(n)]
    kafka_tool(PRODUCER, "--bootstrap-server", broker.sasl, "--topic", topic,
               "--command-config", props, input="\n".join(lines) + "\n")
    out = kafka_tool(CONSUMER, "--bootstrap-server", broker.sasl, "--topic", topic,
                     "--command-config", props, "--from-beginning", "--max-messages", n,
                     "--timeout-ms", "60000")
    assert out.stdout.splitlines() == lines


def test_plain_users_produce_and_consume_with_librdkafka_kcat_kafka_python_and_java(sasl_broker, tmp_path):
    broker = sasl_broker()
    topic = "plain-" + uuid.uuid4().hex[:6]
    create_topic(broker.bootstrap, topic, 1)
    confluent_round_trip(broker, topic, "PLAIN", "alice", "alice-secret")

    t2 = topic + "-kcat"
    create_topic(broker.bootstrap, t2, 1)
    put = kcat(broker, "PLAIN", "alice", "alice-secret", "-P", "-t", t2, input="a\nb\nc\n")
    assert put.returncode == 0, put.stderr
    got = kcat(broker, "PLAIN", "admin", "admin-secret", "-C", "-t", t2, "-o", "beginning", "-e", "-q")
    assert got.returncode == 0, got.stderr
    assert got.stdout.split() == ["a", "b", "c"]

    t3 = topic + "-kp"
    create_topic(broker.bootstrap, t3, 1)
    kafka_python_round_trip(broker, t3, "PLAIN", "alice", "alice-secret")

    t4 = topic + "-java"
    create_topic(broker.bootstrap, t4, 1)
    java_round_trip(broker, tmp_path, t4, "PLAIN", "alice", "alice-secret")
    assert metric(broker, "PLAIN", "success") >= 4


def test_scram_users_from_kafka_configs_and_spate_user_authenticate_and_survive_a_restart(sasl_broker, tmp_path):
    broker = sasl_broker()
    kafka_tool(CONFIGS, "--bootstrap-server", broker.bootstrap, "--alter", "--add-config",
               "SCRAM-SHA-512=[iterations=8192,password=bob-secret]", "--entity-type", "users",
               "--entity-name", "bob")
    spate_cli(broker, "user", "add", "carol", "--password", "carol-secret",
              "--mechanism", "SCRAM-SHA-256")
    # (kafka-configs --describe of users asks DescribeClientQuotas too, which Spate lacks.)
    listed = spate_cli(broker, "user", "list", "--json")
    assert sorted((u["user"], u["mechanism"], u["iterations"]) for u in json.loads(listed)) == [
        ("bob", "SCRAM-SHA-512", 8192), ("carol", "SCRAM-SHA-256", 4096)], listed

    topic = "scram-" + uuid.uuid4().hex[:6]
    create_topic(broker.bootstrap, topic, 1)
    confluent_round_trip(broker, topic, "SCRAM-SHA-512", "bob", "bob-secret")
    t2 = topic + "-256"
    create_topic(broker.bootstrap, t2, 1)
    confluent_round_trip(broker, t2, "SCRAM-SHA-256", "carol", "carol-secret")
    t3 = topic + "-kp"
    create_topic(broker.bootstrap, t3, 1)
    kafka_python_round_trip(broker, t3, "SCRAM-SHA-512", "bob", "bob-secret")
    t4 = topic + "-java"
    create_topic(broker.bootstrap, t4, 1)
    java_round_trip(broker, tmp_path, t4, "SCRAM-SHA-512", "bob", "bob-secret")

    broker.stop()
    broker.restart()
    t5 = topic + "-after"
    create_topic(broker.bootstrap, t5, 1)
    confluent_round_trip(broker, t5, "SCRAM-SHA-512", "bob", "bob-secret", n=5)

    spate_cli(broker, "user", "remove", "carol")
    assert "carol" not in spate_cli(broker, "user", "list")
    # (kafka-configs refuses too few iterations itself; the broker does too.)
    bad = subprocess.run([str(SPATE_BIN), "user", "add", "dave", "--password", "x", "--iterations", "100",
                          "--brokers", broker.bootstrap], capture_output=True, text=True, timeout=60)
    assert bad.returncode != 0 and "UNACCEPTABLE_CREDENTIAL" in bad.stderr, bad.stderr
    assert "Too few iterations" in bad.stderr, bad.stderr


@pytest.mark.parametrize("user,password", [("alice", "Wr0ng-pw-xyz"), ("nobody", "Wr0ng-pw-xyz")])
def test_bad_credentials_are_refused_with_one_message_and_a_closed_connection(sasl_broker, user, password):
    broker = sasl_broker()
    host, port = broker.sasl.split(":")
    failures = metric(broker, "PLAIN", "failure")
    with w.Conn(host, int(port)) as conn:
        error, mechanisms = handshake(conn, "PLAIN")
        assert error == 0 and "PLAIN" in mechanisms and "SCRAM-SHA-512" in mechanisms
        r = conn.request(SASL_AUTHENTICATE, 0, w.bytes_(f"\0{user}\0{password}".encode()))
        assert r.i16() == 58  # SASL_AUTHENTICATION_FAILED
        assert r.string() == "Authentication failed: Invalid username or password"
        conn.expect_closed()
    assert metric(broker, "PLAIN", "failure") == failures + 1
    log = broker.wait_for_log("SASL authentication failed")
    assert password not in log, "the attempt is logged without the secret"
    # The broker serves others meanwhile.
    with w.Conn(host, int(port)) as conn:
        assert handshake(conn, "PLAIN")[0] == 0
        r = conn.request(SASL_AUTHENTICATE, 0, w.bytes_(b"\0alice\0alice-secret"))
        assert r.i16() == 0
        assert w.metadata_v1(conn) is not None
    # A librdkafka client with a wrong password fails instead of producing.
    from confluent_kafka import Producer
    p = Producer({**sasl_conf(broker, "PLAIN", user, password), "message.timeout.ms": 5000})
    reports = []
    p.produce("anything", b"x", on_delivery=lambda err, msg: reports.append(err))
    p.flush(15)
    assert len(reports) == 1 and reports[0] is not None, reports


def test_a_request_before_authentication_closes_the_connection(sasl_broker):
    broker = sasl_broker()
    host, port = broker.sasl.split(":")
    with w.Conn(host, int(port)) as conn:
        conn.send_request(3, 1, w.i32(-1))  # Metadata v1, all topics
        assert conn.expect_closed() == b""
    with w.Conn(host, int(port)) as conn:
        error, versions = w.api_versions(conn)
        assert error == 0 and versions[SASL_HANDSHAKE] == (0, 1) and versions[SASL_AUTHENTICATE] == (0, 2)
        assert handshake(conn, "PLAIN")[0] == 0
        conn.send_request(3, 1, w.i32(-1))
        assert conn.expect_closed() == b""
    with w.Conn(host, int(port)) as conn:
        error, mechanisms = handshake(conn, "GSSAPI")
        assert error == 33  # UNSUPPORTED_SASL_MECHANISM, with the enabled list
        assert mechanisms == ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]
        conn.expect_closed()
    # On the PLAINTEXT listener the SASL requests are out of place (ILLEGAL_SASL_STATE).
    host, port = broker.bootstrap.split(":")
    with w.Conn(host, int(port)) as conn:
        assert handshake(conn, "PLAIN")[0] == 34


def test_an_api_versions_from_the_future_is_answered_and_the_exchange_goes_on(sasl_broker):
    # franz-go asks with its newest ApiVersions first; as Kafka's SaslServerAuthenticator, the
    # UNSUPPORTED_VERSION answer leaves the exchange where it was, so the client asks again.
    broker = sasl_broker()
    host, port = broker.sasl.split(":")
    body = w.uvarint(len(b"spate-it") + 1) + b"spate-it" + w.uvarint(len(b"9.9") + 1) + b"9.9" + b"\x00"
    with w.Conn(host, int(port)) as conn:
        conn.send_frame(w.request_header(w.API_VERSIONS, 99, 7, flexible=True) + body)
        r = w.Reader(conn.recv_frame())
        assert r.i32() == 7
        error, ranges = w.parse_api_versions_v0(r)
        assert error == w.UNSUPPORTED_VERSION and list(ranges) == [w.API_VERSIONS], (error, ranges)
        error, ranges = w.api_versions(conn)
        assert error == 0 and ranges[SASL_HANDSHAKE] == (0, 1)
        assert handshake(conn, "PLAIN")[0] == 0
        r = conn.request(SASL_AUTHENTICATE, 0, w.bytes_(b"\0alice\0alice-secret"))
        assert r.i16() == 0
        assert w.metadata_v1(conn) is not None
    # Once the exchange has begun, ApiVersions is out of place, at any version: closed.
    with w.Conn(host, int(port)) as conn:
        assert handshake(conn, "PLAIN")[0] == 0
        conn.send_frame(w.request_header(w.API_VERSIONS, 99, 8, flexible=True) + body)
        assert conn.expect_closed() == b""


def test_plain_over_a_v0_handshake_takes_raw_tokens(sasl_broker):
    broker = sasl_broker()
    host, port = broker.sasl.split(":")
    with w.Conn(host, int(port)) as conn:
        assert handshake(conn, "PLAIN", version=0)[0] == 0
        conn.send_frame(b"\0alice\0alice-secret")
        assert conn.recv_frame() == b""
        assert w.metadata_v1(conn) is not None
    with w.Conn(host, int(port)) as conn:
        assert handshake(conn, "PLAIN", version=0)[0] == 0
        conn.send_frame(b"\0alice\0nope")
        assert conn.expect_closed() == b""


def test_scram_users_added_on_one_node_authenticate_on_every_node_of_a_cluster():
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient
    from cluster_faults import ClusterNode, wait_for

    ports = {i: free_port() for i in (1, 2, 3)}
    nodes = [ClusterNode(i, ports) for i in (1, 2, 3)]
    for node in nodes:  # a SASL_PLAINTEXT listener beside the inter-broker PLAINTEXT one
        node.sasl = f"127.0.0.1:{free_port()}"
        node.settings.update({
            "listeners": f"PLAINTEXT://{node.bootstrap},SASL_PLAINTEXT://{node.sasl}",
            "listener.name.sasl_plaintext.plain.sasl.jaas.config": JAAS,
        })
    try:
        for node in nodes:
            node.spawn()
        for node in nodes:
            node.await_ready()
        spate_cli(nodes[0], "user", "add", "erin", "--password", "erin-secret",
                  "--mechanism", "SCRAM-SHA-512")

        def authenticates(node, password):
            conf = {**sasl_conf(node, "SCRAM-SHA-512", "erin", password),
                    "bootstrap.servers": node.sasl}
            try:
                AdminClient(conf).list_topics(timeout=5)
                return True
            except KafkaException:
                return False

        for node in nodes:  # the credential reaches every node through the quorum
            wait_for(f"erin authenticated on node {node.node_id}",
                     lambda n=node: authenticates(n, "erin-secret"))
            assert not authenticates(node, "not-erins"), node.node_id
    finally:
        for node in nodes:
            node.stop()


def test_a_sasl_user_allowed_write_but_not_read_produces_and_cannot_consume(sasl_broker):
    from confluent_kafka import Consumer, KafkaError, Producer
    from test_acls import acl, authorizer, create_acls

    # The PLAINTEXT listener (ANONYMOUS) administers; alice comes in over SASL PLAIN.
    broker = sasl_broker(authorizer(super_users="User:ANONYMOUS"))
    topic, group = "acl-sasl-" + uuid.uuid4().hex[:6], "g-" + uuid.uuid4().hex[:6]
    create_topic(broker.bootstrap, topic, 1)
    create_acls(broker.bootstrap, [acl(topic, "WRITE", principal="User:alice"),
                                   acl(group, "READ", resource="GROUP", principal="User:alice")])
    alice = sasl_conf(broker, "PLAIN", "alice", "alice-secret")
    delivered = []
    producer = Producer({**alice, "acks": "all"})
    producer.produce(topic, b"written by alice", on_delivery=lambda e, m: delivered.append(e))
    producer.flush(30)
    assert delivered == [None], delivered

    consumer = Consumer({**alice, "group.id": group, "auto.offset.reset": "earliest"})
    consumer.subscribe([topic])
    refused, values = None, []
    try:
        for _ in range(40):
            m = consumer.poll(0.5)
            if m is None:
                continue
            if m.error():
                if m.error().code() == KafkaError.TOPIC_AUTHORIZATION_FAILED:
                    refused = m.error()
                    break
                continue
            values.append(m.value())
    finally:
        consumer.close()
    assert refused is not None and values == [], (refused, values)
    # The record is there: the super user reads it.
    admin_consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group + "-admin",
                               "auto.offset.reset": "earliest"})
    admin_consumer.subscribe([topic])
    try:
        got = None
        for _ in range(40):
            m = admin_consumer.poll(0.5)
            if m is not None and not m.error():
                got = m.value()
                break
    finally:
        admin_consumer.close()
    assert got == b"written by alice"


@pytest.mark.spate_only("/metrics and log lines of Spate")
def test_sessions_expire_after_connections_max_reauth_ms_unless_the_client_reauthenticates(sasl_broker):
    broker = sasl_broker({"connections.max.reauth.ms": "1500"})
    host, port = broker.sasl.split(":")
    reauths = reauth_metric(broker, "PLAIN")
    with w.Conn(host, int(port)) as conn:
        assert handshake(conn, "PLAIN")[0] == 0
        error, _, _, lifetime = authenticate_v1(conn, b"\0alice\0alice-secret")
        assert (error, lifetime) == (0, 1500)
        assert w.metadata_v1(conn) is not None
        # KIP-368: SaslHandshake + SaslAuthenticate again, same principal, renew the session.
        for _ in range(3):
            time.sleep(1.0)
            assert handshake(conn, "PLAIN")[0] == 0
            assert authenticate_v1(conn, b"\0alice\0alice-secret")[::3] == (0, 1500)
            assert w.metadata_v1(conn) is not None
        # Another principal is refused and the connection closed.
        assert handshake(conn, "PLAIN")[0] == 0
        error, message, _, _ = authenticate_v1(conn, b"\0admin\0admin-secret")
        assert error == 58 and "Cannot change principals" in message
        conn.expect_closed()
    assert reauth_metric(broker, "PLAIN") == reauths + 3
    # A client that does not re-authenticate (a v0 SaslAuthenticate does not even learn the
    # lifetime) is closed at its first request after the lifetime.
    with w.Conn(host, int(port)) as conn:
        assert handshake(conn, "PLAIN")[0] == 0
        r = conn.request(SASL_AUTHENTICATE, 0, w.bytes_(b"\0alice\0alice-secret"))
        assert r.i16() == 0
        assert w.metadata_v1(conn) is not None
        time.sleep(2.0)
        conn.send_request(3, 1, w.i32(-1))
        assert conn.expect_closed() == b""
    broker.wait_for_log("SASL session expired without re-authentication")
    # Without connections.max.reauth.ms a PLAIN session has no lifetime, and a second
    # handshake is out of place (ILLEGAL_SASL_STATE), as in Kafka.
    other = sasl_broker()
    host, port = other.sasl.split(":")
    with w.Conn(host, int(port)) as conn:
        assert handshake(conn, "PLAIN")[0] == 0
        assert authenticate_v1(conn, b"\0alice\0alice-secret")[::3] == (0, 0)
        assert handshake(conn, "PLAIN")[0] == 34


@pytest.mark.spate_only("/metrics and log lines of Spate")
def test_librdkafka_and_the_java_client_reauthenticate_across_session_lifetimes(sasl_broker, tmp_path):
    from confluent_kafka import Consumer, Producer

    broker = sasl_broker({"connections.max.reauth.ms": "2000"})
    topic = "reauth-" + uuid.uuid4().hex[:6]
    create_topic(broker.bootstrap, topic, 1)
    reauths = reauth_metric(broker, "PLAIN")
    closed_before = expired_closed(broker)
    alice = sasl_conf(broker, "PLAIN", "alice", "alice-secret")
    p = Producer({**alice, "acks": "all"})
    c = Consumer({**alice, "group.id": "g-" + uuid.uuid4().hex[:6], "auto.offset.reset": "earliest"})
    c.subscribe([topic])
    sent, got = [], []
    try:
        deadline = time.monotonic() + 8  # four session lifetimes
        while time.monotonic() < deadline:
            sent.append(f"rd-{len(sent)}")
            p.produce(topic, value=sent[-1].encode())
            p.poll(0)
            m = c.poll(0.25)
            if m is not None and not m.error():
                got.append(m.value().decode())
        assert p.flush(30) == 0
        poll_values(c, len(sent), 30, into=got)
    finally:
        c.close()
    assert got == sent
    assert reauth_metric(broker, "PLAIN") >= reauths + 4
    # The Java client: a console consumer waits while a console producer writes a line every
    # half second for 8 s; both re-authenticate every ~2 s.
    props = client_properties(tmp_path / "reauth.properties", "SASL_PLAINTEXT", mechanism="PLAIN",
                              user="alice", password="alice-secret")
    java_topic = topic + "-java"
    create_topic(broker.bootstrap, java_topic, 1)
    java = ["java", "-Xmx512m", "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn", "-cp", f"{KAFKA_LIB}/*"]
    lines = [f"java-{i}" for i in range(16)]
    reauths = reauth_metric(broker, "PLAIN")
    consumer = subprocess.Popen(java + [CONSUMER, "--bootstrap-server", broker.sasl, "--topic", java_topic,
                                        "--command-config", str(props), "--from-beginning",
                                        "--max-messages", str(len(lines)), "--timeout-ms", "60000"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    producer = subprocess.Popen(java + [PRODUCER, "--bootstrap-server", broker.sasl, "--topic", java_topic,
                                        "--command-config", str(props)],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for line in lines:
            producer.stdin.write(line + "\n")
            producer.stdin.flush()
            time.sleep(0.5)
        producer.stdin.close()
        assert producer.wait(60) == 0, producer.stderr.read()[-3000:]
        out, err = consumer.communicate(timeout=90)
        assert out.splitlines() == lines, err[-3000:]
    finally:
        for proc in (producer, consumer):
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert reauth_metric(broker, "PLAIN") >= reauths + 4
    assert expired_closed(broker) == closed_before, "no client was closed for an expired session"


def test_kcat_produces_and_consumes_with_scram_sha_512_and_sha_256(sasl_broker):
    # kcat 1.7.1's librdkafka (2.0.2) sends its nonce twice in client-final
    # (r=<cnonce><cnonce><snonce>); Kafka accepts a nonce that ends with the server's, so Spate does.
    broker = sasl_broker()
    spate_cli(broker, "user", "add", "bob", "--password", "bob-secret", "--mechanism", "SCRAM-SHA-512")
    spate_cli(broker, "user", "add", "carol", "--password", "carol-secret", "--mechanism", "SCRAM-SHA-256")
    for mechanism, user in (("SCRAM-SHA-512", "bob"), ("SCRAM-SHA-256", "carol")):
        topic = f"kcat-{user}-" + uuid.uuid4().hex[:6]
        create_topic(broker.bootstrap, topic, 1)
        put = kcat(broker, mechanism, user, f"{user}-secret", "-P", "-t", topic, input="x\ny\nz\n")
        assert put.returncode == 0, put.stderr
        got = kcat(broker, mechanism, user, f"{user}-secret", "-C", "-t", topic, "-o", "beginning", "-e", "-q")
        assert got.returncode == 0, got.stderr
        assert got.stdout.split() == ["x", "y", "z"]
    bad = kcat(broker, "SCRAM-SHA-512", "bob", "not-bobs", "-L")
    assert bad.returncode != 0 and "Authentication" in bad.stderr, bad.stderr


def spate_sasl(broker, props, *args, input=None):
    return subprocess.run([str(SPATE_BIN), *args, "--brokers", broker.sasl, "--command-config", str(props)],
                          input=input, capture_output=True, text=True, timeout=60)


@pytest.mark.spate_only
def test_spate_cli_and_bench_over_sasl_plaintext_with_scram(sasl_broker, tmp_path):
    broker = sasl_broker()
    spate_cli(broker, "user", "add", "bob", "--password", "bob-secret", "--mechanism", "SCRAM-SHA-512")
    props = tmp_path / "scram.properties"
    props.write_text("security.protocol=SASL_PLAINTEXT\nsasl.mechanism=SCRAM-SHA-512\n"
                     "sasl.username=bob\nsasl.password=bob-secret\n")
    topic = "cli-scram-" + uuid.uuid4().hex[:6]
    made = spate_sasl(broker, props, "topic", "create", topic, "--partitions", "2")
    assert made.returncode == 0, made.stderr
    assert topic in spate_sasl(broker, props, "topic", "list").stdout
    sent = spate_sasl(broker, props, "produce", topic, input="a\nb\nc\n")
    assert sent.returncode == 0, sent.stderr
    got = spate_sasl(broker, props, "consume", topic, "--from-beginning", "--max", "3", "--timeout-ms", "30000")
    assert got.returncode == 0, got.stderr
    assert sorted(got.stdout.split()) == ["a", "b", "c"]
    added = spate_sasl(broker, props, "user", "add", "dan", "--password", "dan-secret")
    assert added.returncode == 0, added.stderr
    assert "dan" in spate_sasl(broker, props, "user", "list").stdout
    result = tmp_path / "bench.json"
    bench = spate_sasl(broker, props, "bench", "produce", "--topic", topic, "--partitions", "2",
                       "--duration-s", "2", "--warmup-s", "1", "--record-bytes", "100", "--quiet",
                       "--json", str(result))
    assert bench.returncode == 0, bench.stderr[-3000:]
    produced = json.loads(result.read_text())["produce"]
    assert produced["records"] > 0 and produced["errors"] == 0, produced
    assert metric(broker, "SCRAM-SHA-512", "success") >= 6


@pytest.mark.spate_only
@pytest.mark.parametrize("mechanism,user", [("SCRAM-SHA-256", "bob"), ("PLAIN", "alice")])
def test_spate_cli_with_a_wrong_password_says_so_and_exits_non_zero(sasl_broker, tmp_path, mechanism, user):
    broker = sasl_broker()
    spate_cli(broker, "user", "add", "bob", "--password", "bob-secret", "--mechanism", "SCRAM-SHA-256")
    props = tmp_path / "wrong.properties"
    props.write_text(f"security.protocol=SASL_PLAINTEXT\nsasl.mechanism={mechanism}\n"
                     "sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required "
                     f'username="{user}" password="Wr0ng-pw";\n')
    p = spate_sasl(broker, props, "topic", "list")
    assert p.returncode != 0
    assert f"SASL {mechanism} authentication with {broker.sasl}" in p.stderr, p.stderr
    assert "SaslAuthenticationFailed" in p.stderr and "Invalid username or password" in p.stderr, p.stderr
    assert "Wr0ng-pw" not in p.stderr
    # A mechanism the listener does not enable is named as such.
    props.write_text("security.protocol=SASL_PLAINTEXT\nsasl.mechanism=SCRAM-SHA-256\n"
                     "sasl.username=bob\nsasl.password=bob-secret\n")
    only_plain = sasl_broker({"listener.name.sasl_plaintext.sasl.enabled.mechanisms": "PLAIN"})
    p = spate_sasl(only_plain, props, "topic", "list")
    assert p.returncode != 0 and "refused the mechanism" in p.stderr and "offers PLAIN" in p.stderr, p.stderr


def test_acls_on_sasl_principals_with_real_clients_survive_a_restart(sasl_broker):
    """A PREFIXED ACL covers topics created later, a DENY beats an ALLOW, a super user bypasses
    a DENY naming it, a group ACL gates joining; the ACLs and the SCRAM user survive a restart."""
    from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
    from confluent_kafka.admin import AdminClient, NewTopic
    from test_acls import acl, authorizer, create_acls

    broker = sasl_broker(authorizer(super_users="User:ANONYMOUS;User:admin"))
    spate_cli(broker, "user", "add", "bob", "--password", "bob-secret", "--mechanism", "SCRAM-SHA-512")
    tag = uuid.uuid4().hex[:6]
    locked = f"team-{tag}-locked"
    create_acls(broker.bootstrap, [
        acl("team-", "ALL", pattern="PREFIXED", principal="User:bob"),
        acl(locked, "WRITE", permission="DENY", principal="User:bob"),
        acl(locked, "ALL", permission="DENY", principal="User:admin"),
        acl("bob-", "READ", resource="GROUP", pattern="PREFIXED", principal="User:bob"),
    ])
    create_topic(broker.bootstrap, locked, 1)
    broker.stop()
    broker.restart()

    bob = sasl_conf(broker, "SCRAM-SHA-512", "bob", "bob-secret")
    later = f"team-{tag}-later"
    bob_admin = AdminClient(bob)  # lives until every answer is in
    for fut in bob_admin.create_topics([NewTopic(later, 1, 1)], request_timeout=30).values():
        fut.result(30)  # Create on the prefix, after the ACL was written
    with pytest.raises(KafkaException) as refused:
        for fut in bob_admin.create_topics([NewTopic(f"other-{tag}", 1, 1)]).values():
            fut.result(30)
    assert refused.value.args[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED

    def produce(conf, topic):
        reports = []
        p = Producer({**conf, "message.timeout.ms": 10000})
        p.produce(topic, b"v", on_delivery=lambda err, msg: reports.append(err))
        p.flush(20)
        return reports

    assert produce(bob, later) == [None]
    denied = produce(bob, locked)  # ALL on the prefix, DENY of Write on the name
    assert denied and denied[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, denied
    # admin is a super user: the DENY naming it does not apply.
    assert produce(sasl_conf(broker, "PLAIN", "admin", "admin-secret"), locked) == [None]

    def consume(group):
        c = Consumer({**bob, "group.id": group, "auto.offset.reset": "earliest"})
        c.subscribe([later])
        try:
            for _ in range(60):
                m = c.poll(0.5)
                if m is None:
                    continue
                if m.error():
                    if m.error().code() == KafkaError.GROUP_AUTHORIZATION_FAILED:
                        return m.error()
                    continue
                return m.value()
        finally:
            c.close()

    assert consume(f"bob-{tag}") == b"v"
    refused = consume(f"carol-{tag}")
    assert isinstance(refused, KafkaError) and refused.code() == KafkaError.GROUP_AUTHORIZATION_FAILED, refused
