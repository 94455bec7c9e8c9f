"""`ssl.principal.mapping.rules` on mTLS listeners (issue 19), per listener as in Kafka: a real
client certificate's subject mapped by a RULE to a short name that an ACL grants, another
certificate falling through to DEFAULT (its whole DN, which no ACL names: denied), and on a
listener without DEFAULT a certificate no rule applies to is closed, as Kafka closes it. Clients:
confluent-kafka (librdkafka) and raw requests over Python's ssl."""

from __future__ import annotations

import socket
import ssl
import uuid

import pytest
from confluent_kafka import KafkaError, Producer
from confluent_kafka.admin import AclBinding, AclOperation, AclPermissionType, AdminClient
from confluent_kafka.admin import ResourcePatternType, ResourceType

from conftest import Broker, free_port
from helpers import create_topic
from security import api_versions_over, make_pki

# Alice's OU is eng: the rule maps her to "alice". Bob's is ops: DEFAULT keeps his whole DN.
RULE = r"RULE:^CN=([^,]+),OU=eng,.*$/$1/L"
BOB_DN = "CN=bob,OU=ops,O=Acme,C=US"


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_pki(tmp_path_factory.mktemp("mapping-pki"), clients={
        "alice": {"C": "US", "O": "Acme", "OU": "eng", "CN": "Alice"},
        "bob": {"C": "US", "O": "Acme", "OU": "ops", "CN": "bob"},
    })


@pytest.fixture
def broker(request, pki, monkeypatch):
    """PLAINTEXT (the admin, a super user), MAPPED (mTLS: the rule, then DEFAULT) and STRICT
    (mTLS: the rule alone); an authorizer that denies what no ACL allows."""
    monkeypatch.setenv("SPATE_LOG", "info,broker::transport=debug")
    b = Broker("mapping-" + uuid.uuid4().hex[:6])
    b.mapped, b.strict = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    b.settings.update({
        "listeners": f"PLAINTEXT://{b.bootstrap},MAPPED://{b.mapped},STRICT://{b.strict}",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,MAPPED:SSL,STRICT:SSL",
        "ssl.keystore.location": pki["server_pem"],
        "ssl.truststore.location": pki["ca"],
        "ssl.client.auth": "required",
        "listener.name.mapped.ssl.principal.mapping.rules": f"{RULE}, DEFAULT",
        "listener.name.strict.ssl.principal.mapping.rules": RULE,
        "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        "super.users": "User:ANONYMOUS",
    })
    b.start()
    try:
        yield b
    finally:
        rep = getattr(request.node, "rep_call", None)
        failed = bool(rep and rep.failed)
        if failed:
            print(b.log_tail())
        b.cleanup(failed)


def mtls(pki, who) -> dict:
    return {"security.protocol": "SSL", "ssl.ca.location": pki["ca"],
            "ssl.certificate.location": pki[f"{who}_crt"], "ssl.key.location": pki[f"{who}_key"]}


def produce_one(listener, conf, topic):
    """One record; the delivery error (None: written)."""
    p = Producer({"bootstrap.servers": listener, "message.timeout.ms": 20000, **conf})
    errors = []
    p.produce(topic, b"hello", on_delivery=lambda err, msg: errors.append(err))
    assert p.flush(30) == 0
    return errors[0]


def grant_write(bootstrap, principal, topic):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    binding = AclBinding(ResourceType.TOPIC, topic, ResourcePatternType.LITERAL, principal, "*",
                         AclOperation.WRITE, AclPermissionType.ALLOW)
    for fut in admin.create_acls([binding], request_timeout=30).values():
        fut.result(30)


def test_a_mapped_principal_is_granted_by_its_acl_and_an_unmapped_dn_is_denied(broker, pki):
    topic = "mapped-" + uuid.uuid4().hex[:6]
    create_topic(broker.bootstrap, topic, 1)
    # The ACL names the short name the rule gives, not the certificate's DN.
    grant_write(broker.bootstrap, "User:alice", topic)
    assert produce_one(broker.mapped, mtls(pki, "alice"), topic) is None
    err = produce_one(broker.mapped, mtls(pki, "bob"), topic)
    assert err is not None and err.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, err
    # Bob's whole DN (DEFAULT) is his principal: an ACL naming it lets him write.
    grant_write(broker.bootstrap, f"User:{BOB_DN}", topic)
    assert produce_one(broker.mapped, mtls(pki, "bob"), topic) is None


def _tls(address, pki, who):
    host, port = address.rsplit(":", 1)
    ctx = ssl.create_default_context(cafile=pki["ca"])
    ctx.load_cert_chain(pki[f"{who}_crt"], pki[f"{who}_key"])
    return ctx.wrap_socket(socket.create_connection((host, int(port)), timeout=10), server_hostname="localhost")



@pytest.mark.spate_only("the principals and the refusal are read from Spate's log")
def test_rules_are_per_listener_and_no_rule_applying_closes_the_connection(broker, pki):
    # STRICT has no DEFAULT: bob's certificate is valid but no rule applies, so he is closed.
    with _tls(broker.strict, pki, "bob") as s:
        assert api_versions_over(s) == b""
    broker.wait_for_log("no ssl.principal.mapping.rules rule applies")
    with _tls(broker.strict, pki, "alice") as s:
        assert len(api_versions_over(s)) > 8
    broker.wait_for_log("principal=User:alice")
    # The same certificate on MAPPED falls through to DEFAULT.
    with _tls(broker.mapped, pki, "bob") as s:
        assert len(api_versions_over(s)) > 8
    broker.wait_for_log(f"principal=User:{BOB_DN}")
    assert broker.alive()
