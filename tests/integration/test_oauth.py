"""SASL OAUTHBEARER (issue 19) on a SASL_PLAINTEXT listener: JWTs signed in the test with a key
made in the test, checked by the broker against a JWKS file (Kafka's KIP-768 validator settings),
with real clients (librdkafka through confluent-kafka with an `oauth_cb`, kafka-python with a
token provider) and the refusals Kafka gives: an expired token, a wrong issuer or audience, a bad
signature or an unknown key get the error JSON as a challenge, then SASL_AUTHENTICATION_FAILED
and a closed connection. A token's expiry ends its session (KIP-368), as in Kafka."""

from __future__ import annotations

import json
import subprocess
import time
import uuid

import jwt  # PyJWT, installed by ci/install-deps
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

import kafka_wire as w
from helpers import create_topic, poll_values
from conftest import SPATE_BIN, free_port
from security import (JAAS, HttpsJson, authenticate_v1, expired_closed, handshake, make_pki, metric,
                      reauth_metric)
from security import secure_brokers  # noqa: F401 (fixture)

pytestmark = pytest.mark.spate_only("Spate's /metrics and its log lines")

ISSUER = "https://idp.spate.test"
AUDIENCE = "spate"
INVALID_TOKEN = '{"status":"invalid_token"}'
OAUTH_MODULE = "org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule"
JWKS_URL = "listener.name.sasl_plaintext.oauthbearer.sasl.oauthbearer.jwks.endpoint.url"


class Issuer:
    """An identity provider in the test: an RSA and an EC key, published as a JWKS file."""

    def __init__(self, directory):
        self.rsa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.ec = ec.generate_private_key(ec.SECP256R1())
        keys = []
        for kid, key, algorithm in [("rsa-1", self.rsa, jwt.algorithms.RSAAlgorithm),
                                    ("ec-1", self.ec, jwt.algorithms.ECAlgorithm)]:
            jwk = json.loads(algorithm.to_jwk(key.public_key()))
            jwk.update(kid=kid, use="sig")
            keys.append(jwk)
        self.jwks = directory / "jwks.json"
        self.jwks.write_text(json.dumps({"keys": keys}))
        self.rotated = {}

    def rotate(self, kid: str) -> str:
        """A new RSA key `kid`: the JWKS document that publishes it alone."""
        self.rotated[kid] = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.rotated[kid].public_key()))
        jwk.update(kid=kid, use="sig")
        return json.dumps({"keys": [jwk]})

    def token(self, sub="alice", lifetime_s=300, key=None, kid="rsa-1", **claims) -> str:
        now = int(time.time())
        body = {"sub": sub, "iss": ISSUER, "aud": AUDIENCE, "iat": now, "exp": now + lifetime_s,
                "scope": "kafka", **claims}
        key = key or self.rotated.get(kid) or (self.ec if kid == "ec-1" else self.rsa)
        algorithm = "ES256" if kid == "ec-1" else "RS256"
        return jwt.encode(body, key, algorithm=algorithm, headers={"kid": kid})


@pytest.fixture
def oauth_broker(secure_brokers, tmp_path):
    """start(settings=None): a broker with a PLAINTEXT listener (`bootstrap`) and a
    SASL_PLAINTEXT one (`sasl`) that takes OAUTHBEARER tokens of `broker.issuer` (and PLAIN,
    for comparison)."""
    def start(settings: dict | None = None):
        issuer = Issuer(tmp_path)
        b = secure_brokers("oauth", {"sasl": ("SASL_PLAINTEXT", "SASL_PLAINTEXT")}, {
            "listener.name.sasl_plaintext.sasl.enabled.mechanisms": "OAUTHBEARER,PLAIN",
            "listener.name.sasl_plaintext.plain.sasl.jaas.config": JAAS,
            JWKS_URL: f"file://{issuer.jwks}",
            "sasl.oauthbearer.expected.issuer": ISSUER,
            "sasl.oauthbearer.expected.audience": AUDIENCE,
            **(settings or {}),
        })
        b.issuer = issuer
        return b

    return start


def client_first(token: str) -> bytes:
    return f"n,,\x01auth=Bearer {token}\x01\x01".encode()


def confluent_conf(broker, token_fn):
    return {"bootstrap.servers": broker.sasl, "security.protocol": "SASL_PLAINTEXT",
            "sasl.mechanism": "OAUTHBEARER", "oauth_cb": lambda _config: (token_fn(), time.time() + 300)}


def confluent_round_trip(broker, topic, token_fn, n=20):
    from confluent_kafka import Consumer, Producer

    p = Producer({**confluent_conf(broker, token_fn), "acks": "all"})
    for i in range(n):
        p.produce(topic, value=f"oauth-{i}".encode())
    assert p.flush(60) == 0
    c = Consumer({**confluent_conf(broker, token_fn), "group.id": "g-" + uuid.uuid4().hex[:6],
                  "auto.offset.reset": "earliest"})
    c.subscribe([topic])
    got = []
    try:
        deadline = time.monotonic() + 60
        while len(got) < n and time.monotonic() < deadline:
            m = c.poll(1.0)
            if m is not None and not m.error():
                got.append(m.value().decode())
    finally:
        c.close()
    assert got == [f"oauth-{i}" for i in range(n)]


def test_oauthbearer_tokens_produce_and_consume_with_librdkafka_and_kafka_python(oauth_broker):
    broker = oauth_broker()
    topic = "oauth-" + uuid.uuid4().hex[:6]
    create_topic(broker.bootstrap, topic, partitions=1)
    successes = metric(broker, "OAUTHBEARER", "success")
    confluent_round_trip(broker, topic, lambda: broker.issuer.token())
    # An ES256 token (EC key) works the same.
    topic2 = topic + "-ec"
    create_topic(broker.bootstrap, topic2, partitions=1)
    confluent_round_trip(broker, topic2, lambda: broker.issuer.token(kid="ec-1"))
    assert metric(broker, "OAUTHBEARER", "success") >= successes + 4

    from kafka import KafkaConsumer, KafkaProducer
    from kafka.net.sasl.oauth import AbstractTokenProvider

    class Provider(AbstractTokenProvider):
        def token(self):
            return broker.issuer.token(sub="bob")

    auth = dict(bootstrap_servers=broker.sasl, security_protocol="SASL_PLAINTEXT",
                sasl_mechanism="OAUTHBEARER", sasl_oauth_token_provider=Provider())
    p = KafkaProducer(acks="all", **auth)
    for i in range(10):
        p.send(topic, f"kp-{i}".encode())
    p.flush(60)
    p.close()
    c = KafkaConsumer(topic, auto_offset_reset="earliest", consumer_timeout_ms=20000, **auth)
    got = [m.value.decode() for m in c]
    c.close()
    assert got[-10:] == [f"kp-{i}" for i in range(10)]


REFUSED = {
    "expired": lambda i: i.token(lifetime_s=-120),
    "wrong issuer": lambda i: i.token(iss="https://evil.test"),
    "wrong audience": lambda i: i.token(aud="someone-else"),
    "bad signature": lambda i: i.token(key=rsa.generate_private_key(public_exponent=65537, key_size=2048)),
    "unknown key": lambda i: i.token(kid="rsa-2"),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_refused_tokens_get_the_error_json_then_a_failure_and_a_closed_connection(oauth_broker, case):
    broker = oauth_broker()
    host, port = broker.sasl.split(":")
    failures = metric(broker, "OAUTHBEARER", "failure")
    token = REFUSED[case](broker.issuer)
    with w.Conn(host, int(port)) as conn:
        error, mechanisms = handshake(conn, "OAUTHBEARER")
        assert error == 0 and mechanisms == ["OAUTHBEARER", "PLAIN"]
        error, _, challenge, _ = authenticate_v1(conn, client_first(token))
        assert error == 0 and challenge.decode() == INVALID_TOKEN
        error, message, _, _ = authenticate_v1(conn, b"\x01")
        assert error == 58 and message == INVALID_TOKEN  # SASL_AUTHENTICATION_FAILED
        conn.expect_closed()
    assert metric(broker, "OAUTHBEARER", "failure") == failures + 1
    log = broker.wait_for_log("SASL authentication failed")
    assert token not in log and token.split(".")[2] not in log, "logged without the token"
    # A malformed first message fails at once.
    with w.Conn(host, int(port)) as conn:
        assert handshake(conn, "OAUTHBEARER")[0] == 0
        error, message, _, _ = authenticate_v1(conn, b"n,,auth=Bearer x")
        assert error == 58 and "OAUTHBEARER" in message
        conn.expect_closed()
    # The broker serves others meanwhile, and a librdkafka client with a refused token fails.
    with w.Conn(host, int(port)) as conn:
        assert handshake(conn, "OAUTHBEARER")[0] == 0
        error, _, _, lifetime = authenticate_v1(conn, client_first(broker.issuer.token()))
        assert error == 0 and 0 < lifetime <= 300_000
        assert w.metadata_v1(conn) is not None
    from confluent_kafka import Producer
    p = Producer({**confluent_conf(broker, lambda: token), "message.timeout.ms": 5000})
    reports = []
    p.produce("anything", b"x", on_delivery=lambda err, msg: reports.append(err))
    p.flush(15)
    assert len(reports) == 1 and reports[0] is not None, reports


def test_a_session_ends_with_its_token_and_reauthentication_keeps_the_principal(oauth_broker):
    broker = oauth_broker()
    host, port = broker.sasl.split(":")
    with w.Conn(host, int(port)) as conn:
        assert handshake(conn, "OAUTHBEARER")[0] == 0
        # The token expires in 3 s: the session lifetime is what is left of it (Kafka's
        # OAuthBearerSaslServer reports the credential's lifetime even without
        # connections.max.reauth.ms).
        error, _, _, lifetime = authenticate_v1(conn, client_first(broker.issuer.token(lifetime_s=3)))
        assert error == 0 and 1000 < lifetime <= 3000, lifetime
        assert w.metadata_v1(conn) is not None
        # Re-authenticating with a fresh token of the same subject renews the session.
        assert handshake(conn, "OAUTHBEARER")[0] == 0
        error, _, _, lifetime = authenticate_v1(conn, client_first(broker.issuer.token(lifetime_s=60)))
        assert error == 0 and 30_000 < lifetime <= 60_000, lifetime
        time.sleep(3.5)
        assert w.metadata_v1(conn) is not None
        # Another subject is refused, and the connection closed.
        assert handshake(conn, "OAUTHBEARER")[0] == 0
        error, message, _, _ = authenticate_v1(conn, client_first(broker.issuer.token(sub="mallory")))
        assert error == 58 and "Cannot change principals" in message
        conn.expect_closed()
    # A client that does not re-authenticate is closed after its token's lifetime.
    expired_closes = expired_closed(broker)
    with w.Conn(host, int(port)) as conn:
        assert handshake(conn, "OAUTHBEARER")[0] == 0
        error, _, _, lifetime = authenticate_v1(conn, client_first(broker.issuer.token(lifetime_s=2)))
        assert error == 0 and lifetime <= 2000
        time.sleep(2.5)
        conn.send_request(3, 1, w.i32(-1))
        assert conn.expect_closed() == b""
    assert expired_closed(broker) == expired_closes + 1
    broker.wait_for_log("SASL session expired without re-authentication")


def test_librdkafka_reauthenticates_with_tokens_across_session_lifetimes(oauth_broker):
    broker = oauth_broker({"connections.max.reauth.ms": "2000"})
    topic = "oauth-reauth-" + uuid.uuid4().hex[:6]
    create_topic(broker.bootstrap, topic, partitions=1)
    from confluent_kafka import Consumer, Producer

    before = reauth_metric(broker, "OAUTHBEARER")
    closes = expired_closed(broker)
    p = Producer({**confluent_conf(broker, lambda: broker.issuer.token()), "acks": "all"})
    c = Consumer({**confluent_conf(broker, lambda: broker.issuer.token()),
                  "group.id": "g-" + uuid.uuid4().hex[:6], "auto.offset.reset": "earliest"})
    c.subscribe([topic])
    sent, got = [], []
    try:
        deadline = time.monotonic() + 8  # four session lifetimes
        while time.monotonic() < deadline:
            value = f"r-{len(sent)}"
            p.produce(topic, value=value.encode())
            sent.append(value)
            p.poll(0)
            m = c.poll(0.25)
            if m is not None and not m.error():
                got.append(m.value().decode())
        assert p.flush(30) == 0
        poll_values(c, len(sent), 30, into=got)
    finally:
        c.close()
    assert got == sent
    assert reauth_metric(broker, "OAUTHBEARER") >= before + 4
    assert expired_closed(broker) == closes


def test_the_java_client_produces_and_consumes_with_a_token_from_a_file(oauth_broker, tmp_path):
    """Kafka's own OAuthBearerLoginCallbackHandler reads the token from a file: URL (KIP-768's
    file token retriever; Kafka 4 wants the URL in org.apache.kafka.sasl.oauthbearer.allowed.urls)."""
    from helpers import KAFKA_LIB
    from security import CONSUMER, PRODUCER

    broker = oauth_broker()
    topic = "oauth-java-" + uuid.uuid4().hex[:6]
    create_topic(broker.bootstrap, topic, partitions=1)
    token = tmp_path / "token.jwt"
    token.write_text(broker.issuer.token(sub="carol"))
    props = tmp_path / "oauth.properties"
    props.write_text(
        "security.protocol=SASL_PLAINTEXT\nsasl.mechanism=OAUTHBEARER\n"
        "sasl.login.callback.handler.class="
        "org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginCallbackHandler\n"
        f"sasl.oauthbearer.token.endpoint.url=file://{token}\n"
        "sasl.jaas.config=org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required ;\n")
    java = ["java", "-Xmx512m", "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn",
            f"-Dorg.apache.kafka.sasl.oauthbearer.allowed.urls=file://{token}", "-cp", f"{KAFKA_LIB}/*"]
    successes = metric(broker, "OAUTHBEARER", "success")
    lines = [f"java-oauth-{i}" for i in range(5)]
    p = subprocess.run(java + [PRODUCER, "--bootstrap-server", broker.sasl, "--topic", topic,
                               "--command-config", str(props)],
                       input="\n".join(lines) + "\n", capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr[-3000:]
    c = subprocess.run(java + [CONSUMER, "--bootstrap-server", broker.sasl, "--topic", topic,
                               "--command-config", str(props), "--from-beginning",
                               "--max-messages", str(len(lines)), "--timeout-ms", "60000"],
                       capture_output=True, text=True, timeout=120)
    assert c.stdout.splitlines() == lines, c.stderr[-3000:]
    assert metric(broker, "OAUTHBEARER", "success") >= successes + 2


def accepted(broker, token) -> bool:
    """Whether the SASL listener takes `token` (one OAUTHBEARER exchange on the wire)."""
    host, port = broker.sasl.split(":")
    with w.Conn(host, int(port)) as conn:
        assert handshake(conn, "OAUTHBEARER")[0] == 0
        error, _, challenge, _ = authenticate_v1(conn, client_first(token))
        assert error == 0
        assert challenge in (b"", INVALID_TOKEN.encode()), challenge
        return challenge == b""


def https_jwks_broker(secure_brokers, tmp_path, settings: dict):
    """A broker whose JWKS is served over HTTPS by an `HttpsJson` of a private CA, which the
    OAUTHBEARER JAAS options trust (Kafka's names): (broker, the server)."""
    (tmp_path / "pki").mkdir()
    pki = make_pki(tmp_path / "pki")
    issuer = Issuer(tmp_path)
    idp = HttpsJson(pki, issuer.jwks.read_text())
    jaas = f'{OAUTH_MODULE} required ssl.truststore.type="PEM" ssl.truststore.location="{pki["ca"]}";'
    try:
        b = secure_brokers("oauth-https", {"sasl": ("SASL_PLAINTEXT", "SASL_PLAINTEXT")}, {
            "listener.name.sasl_plaintext.sasl.enabled.mechanisms": "OAUTHBEARER",
            JWKS_URL: idp.url,
            "listener.name.sasl_plaintext.oauthbearer.sasl.jaas.config": jaas,
            "sasl.oauthbearer.expected.issuer": ISSUER,
            "sasl.oauthbearer.expected.audience": AUDIENCE,
            **settings,
        })
    except BaseException:
        idp.stop()
        raise
    b.issuer = issuer
    return b, idp


def test_a_jwks_over_https_is_refreshed_early_for_a_new_key_id(secure_brokers, tmp_path):
    """KIP-768's RefreshingHttpsJwks: a token of a kid the set lacks fails, and asks for a
    refresh at once (not an hour later): the identity provider's new key is taken without a
    restart."""
    broker, idp = https_jwks_broker(secure_brokers, tmp_path, {})
    with idp:
        topic = "oauth-https-" + uuid.uuid4().hex[:6]
        create_topic(broker.bootstrap, topic, partitions=1)
        confluent_round_trip(broker, topic, lambda: broker.issuer.token(), n=5)
        gets = idp.gets
        idp.document = broker.issuer.rotate("rsa-2")
        new_token = broker.issuer.token(kid="rsa-2")
        deadline = time.monotonic() + 20
        while not accepted(broker, new_token):
            assert time.monotonic() < deadline, "the rotated key was never fetched"
            time.sleep(0.2)
        assert idp.gets > gets
        broker.wait_for_log("OAuth JWKS refresh expedited")
        # The old key left the set.
        assert not accepted(broker, broker.issuer.token())
        topic2 = topic + "-rotated"
        create_topic(broker.bootstrap, topic2, partitions=1)
        confluent_round_trip(broker, topic2, lambda: broker.issuer.token(kid="rsa-2"), n=5)


@pytest.mark.solo("waits for periodic JWKS refreshes (sasl.oauthbearer.jwks.endpoint.refresh.ms)")
def test_a_jwks_endpoint_that_goes_down_keeps_the_keys_in_use(secure_brokers, tmp_path):
    broker, idp = https_jwks_broker(secure_brokers, tmp_path, {
        "sasl.oauthbearer.jwks.endpoint.refresh.ms": "1000",
        "sasl.oauthbearer.jwks.endpoint.retry.backoff.ms": "50",
        "sasl.oauthbearer.jwks.endpoint.retry.backoff.max.ms": "200",
    })
    with idp:
        deadline = time.monotonic() + 20
        while idp.gets < 3:  # the fetch at start and two refreshes
            assert time.monotonic() < deadline, f"{idp.gets} GETs"
            time.sleep(0.1)
        assert accepted(broker, broker.issuer.token())
    # Stopped: the next refresh fails after its retries, and the keys stay.
    broker.wait_for_log("OAuth JWKS refresh failed; keeping the keys in use", timeout=20)
    assert accepted(broker, broker.issuer.token(kid="ec-1"))
    assert not accepted(broker, broker.issuer.token(kid="rsa-9"))


def test_a_jwks_endpoint_unreachable_or_untrusted_at_start_refuses_the_start(tmp_path):
    (tmp_path / "pki").mkdir()
    pki = make_pki(tmp_path / "pki")
    with HttpsJson(pki, Issuer(tmp_path).jwks.read_text()) as idp:
        cases = {
            "unreachable": (f"https://127.0.0.1:{free_port()}/jwks", None, "connecting to"),
            # The system's CAs do not know the test CA; another CA is not it either.
            "untrusted": (idp.url, None, "certificate"),
            "other CA": (idp.url, pki["other_ca"], "certificate"),
        }
        for case, (url, ca, why) in cases.items():
            argv = [str(SPATE_BIN), "start", "--data-dir", str(tmp_path / case), "--admin-listen", "none",
                    "--set", f"listeners=PLAINTEXT://127.0.0.1:{free_port()},SASL_PLAINTEXT://127.0.0.1:{free_port()}",
                    "--set", "sasl.enabled.mechanisms=OAUTHBEARER",
                    "--set", f"sasl.oauthbearer.jwks.endpoint.url={url}",
                    "--set", "sasl.oauthbearer.jwks.endpoint.retry.backoff.max.ms=300"]
            if ca:
                argv += ["--set", f'sasl.jaas.config={OAUTH_MODULE} required ssl.truststore.location="{ca}";']
            out = subprocess.run(argv, capture_output=True, text=True, timeout=60)
            assert out.returncode != 0, (case, out.stdout[-2000:])
            assert "sasl.oauthbearer.jwks.endpoint.url" in out.stderr, (case, out.stderr)
            assert "could not fetch the JWKS from" in out.stderr and why in out.stderr, (case, out.stderr)
