"""ACLs and the authorizer (issue 19) with real clients: confluent-kafka's AdminClient
(create_acls / describe_acls / delete_acls), Kafka's own kafka-acls tool, the confluent producer
and consumer, and raw requests where the exact error code is the point.

Every connection is User:ANONYMOUS until SASL/TLS set principals, so the rules under test name
User:ANONYMOUS; `acl()` and `create_acls()` take any principal and client settings, for tests with
authenticated users.
"""

from __future__ import annotations

import json
import subprocess
import time
import uuid

import kafka_wire as w
import pytest
from confluent_kafka import KafkaError, KafkaException, Producer
from confluent_kafka.admin import (
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    AdminClient,
    ResourcePatternType,
    ResourceType,
)
from conftest import SPATE_BIN
from helpers import create_topic, kafka_tool

AUTHORIZER = "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
ANONYMOUS = "User:ANONYMOUS"
ACLS_TOOL = "org.apache.kafka.tools.AclCommand"

TOPIC_AUTHORIZATION_FAILED = 29
GROUP_AUTHORIZATION_FAILED = 30
SECURITY_DISABLED = 54
DESCRIBE_ACLS = 29


def authorizer(super_users: str = "", allow_if_no_acl: bool = False) -> dict:
    return {
        "authorizer.class.name": AUTHORIZER,
        "super.users": super_users,
        "allow.everyone.if.no.acl.found": "true" if allow_if_no_acl else "false",
    }


def admin(bootstrap: str, client_config: dict | None = None) -> AdminClient:
    return AdminClient({"bootstrap.servers": bootstrap, **(client_config or {})})


def acl(name: str, operation: str, *, resource: str = "TOPIC", pattern: str = "LITERAL",
        principal: str = ANONYMOUS, permission: str = "ALLOW", host: str = "*") -> AclBinding:
    """A binding from Kafka's names: acl("orders", "READ", principal="User:alice")."""
    return AclBinding(getattr(ResourceType, resource), name, getattr(ResourcePatternType, pattern),
                      principal, host, getattr(AclOperation, operation),
                      getattr(AclPermissionType, permission))


def create_acls(bootstrap: str, bindings: list, client_config: dict | None = None):
    """CreateAcls through the AdminClient; raises the first refusal."""
    client = admin(bootstrap, client_config)  # lives until every answer is in
    for fut in client.create_acls(bindings, request_timeout=30).values():
        fut.result(30)


def describe_acls(bootstrap: str, **filter_fields) -> set[tuple]:
    """DescribeAcls with a filter (ANY everywhere unless given) as comparable tuples."""
    fields = dict(restype=ResourceType.ANY, name=None, resource_pattern_type=ResourcePatternType.ANY,
                  principal=None, host=None, operation=AclOperation.ANY,
                  permission_type=AclPermissionType.ANY)
    fields.update(filter_fields)
    client = admin(bootstrap)
    found = client.describe_acls(AclBindingFilter(**fields), request_timeout=30).result(30)
    return {as_tuple(b) for b in found}


def as_tuple(b: AclBinding) -> tuple:
    return (b.restype.name, b.name, b.resource_pattern_type.name, b.principal, b.host,
            b.operation.name, b.permission_type.name)


def raw_produce(broker, topic: str) -> int:
    with w.Conn(broker.host, broker.port) as c:
        err, _ = w.produce_v3(c, topic, 0, w.record_batch([w.Rec(b"k", b"v")]))
    return err


def raw_fetch(broker, topic: str) -> int:
    with w.Conn(broker.host, broker.port) as c:
        err, _, _ = w.fetch_v4(c, topic, 0)
    return err


def raw_describe_acls_error(broker) -> tuple[int, str]:
    """DescribeAcls v1 of everything: (error code, message)."""
    any_ = w.i8(1)
    body = any_ + w.string(None) + any_ + w.string(None) + w.string(None) + any_ + any_
    with w.Conn(broker.host, broker.port) as c:
        r = c.request(DESCRIBE_ACLS, 1, body)
    r.i32()  # throttle
    return r.i16(), r.string()


def metadata_topics(broker) -> dict:
    with w.Conn(broker.host, broker.port) as c:
        _, topics = w.metadata_v1(c, None)
    return topics


def group_errors(broker, group: str) -> tuple[int, int]:
    """FindCoordinator's and JoinGroup's error codes for `group` (the coordinator may still be
    loading; an authorization failure is answered at once)."""
    deadline = time.monotonic() + 30
    with w.Conn(broker.host, broker.port) as c:
        while True:
            found = w.find_coordinator_v1(c, group)[0]
            if found != w.COORDINATOR_NOT_AVAILABLE or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        return found, w.join_group_v5(c, group).error


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def test_acl_apis_without_an_authorizer_answer_security_disabled(broker):
    with pytest.raises(KafkaException) as refused:
        create_acls(broker.bootstrap, [acl("t", "READ")])
    assert refused.value.args[0].code() == KafkaError.SECURITY_DISABLED
    # librdkafka's describe_acls drops the top-level error: ask on the wire.
    assert raw_describe_acls_error(broker) == (SECURITY_DISABLED, "No Authorizer is configured on the broker")
    # Without an authorizer everything stays allowed.
    topic = unique("open")
    create_topic(broker.bootstrap, topic, 1)
    assert raw_produce(broker, topic) == 0


def test_create_describe_delete_acls_and_they_survive_a_restart(broker_factory):
    broker = broker_factory(authorizer(super_users=ANONYMOUS))
    bindings = [
        acl("orders", "READ", principal="User:alice"),
        acl("logs-", "WRITE", pattern="PREFIXED", principal="User:bob"),
        acl("orders", "WRITE", principal="User:alice", permission="DENY", host="10.0.0.1"),
        acl("app", "READ", resource="GROUP", principal="User:alice"),
        acl("kafka-cluster", "DESCRIBE", resource="BROKER", principal="User:*"),
    ]
    create_acls(broker.bootstrap, bindings)
    create_acls(broker.bootstrap, bindings[:1])  # creating one again changes nothing
    everything = {as_tuple(b) for b in bindings}
    assert describe_acls(broker.bootstrap) == everything

    # Filters: MATCH finds the ACLs that apply to a name (literal and prefixes), ANY exact names.
    assert describe_acls(broker.bootstrap, restype=ResourceType.TOPIC, name="logs-2026",
                         resource_pattern_type=ResourcePatternType.MATCH) == {as_tuple(bindings[1])}
    assert describe_acls(broker.bootstrap, principal="User:alice", restype=ResourceType.TOPIC) == {
        as_tuple(bindings[0]), as_tuple(bindings[2])}
    assert describe_acls(broker.bootstrap, permission_type=AclPermissionType.DENY) == {as_tuple(bindings[2])}

    # A malformed binding is refused alone (INVALID_REQUEST): no colon in the principal.
    with pytest.raises(KafkaException) as refused:
        create_acls(broker.bootstrap, [acl("t", "READ", principal="alice")])
    assert refused.value.args[0].code() == KafkaError.INVALID_REQUEST

    broker.stop()
    broker.restart()
    assert describe_acls(broker.bootstrap) == everything

    client = admin(broker.bootstrap)
    deleted = client.delete_acls(
        [AclBindingFilter(ResourceType.TOPIC, "orders", ResourcePatternType.LITERAL, None, None,
                          AclOperation.ANY, AclPermissionType.ANY)], request_timeout=30)
    matched = list(deleted.values())[0].result(30)
    assert {as_tuple(b) for b in matched} == {as_tuple(bindings[0]), as_tuple(bindings[2])}
    left = everything - {as_tuple(bindings[0]), as_tuple(bindings[2])}
    assert describe_acls(broker.bootstrap) == left
    broker.stop()
    broker.restart()
    assert describe_acls(broker.bootstrap) == left


def test_kafka_acls_tool_adds_lists_and_removes(broker_factory):
    broker = broker_factory(authorizer(super_users=ANONYMOUS))
    common = ["--bootstrap-server", broker.bootstrap]
    out = kafka_tool(ACLS_TOOL, *common, "--add", "--allow-principal", "User:alice",
                     "--operation", "Read", "--topic", "payments").stdout
    assert "User:alice" in out and "READ" in out.upper()
    assert describe_acls(broker.bootstrap) == {
        ("TOPIC", "payments", "LITERAL", "User:alice", "*", "READ", "ALLOW")}
    listed = kafka_tool(ACLS_TOOL, *common, "--list", "--topic", "payments").stdout
    assert "principal=User:alice" in listed and "operation=READ" in listed
    kafka_tool(ACLS_TOOL, *common, "--remove", "--force", "--allow-principal", "User:alice",
               "--operation", "Read", "--topic", "payments")
    assert describe_acls(broker.bootstrap) == set()


def test_write_denied_while_read_allowed_and_deny_beats_allow(broker_factory):
    # The admin connection is a super user while the rules are written, then it is not.
    broker = broker_factory(authorizer(super_users=ANONYMOUS))
    readable, mixed = unique("readable"), unique("mixed")
    create_topic(broker.bootstrap, readable, 1)
    create_topic(broker.bootstrap, mixed, 1)
    assert raw_produce(broker, readable) == 0
    create_acls(broker.bootstrap, [
        acl(readable, "READ"),
        acl("mixed-", "ALL", pattern="PREFIXED"),
        acl(mixed, "WRITE", permission="DENY"),
    ])
    broker.settings["super.users"] = ""
    broker.stop()
    broker.restart()

    # Read (and the Describe it implies) but no Write.
    assert raw_produce(broker, readable) == TOPIC_AUTHORIZATION_FAILED
    assert raw_fetch(broker, readable) == 0
    # ALL on the prefix, a DENY of Write on the name: the DENY wins for Write alone.
    assert raw_produce(broker, mixed) == TOPIC_AUTHORIZATION_FAILED
    assert raw_fetch(broker, mixed) == 0
    # A real producer hears TOPIC_AUTHORIZATION_FAILED too.
    errors = []
    producer = Producer({"bootstrap.servers": broker.bootstrap, "message.timeout.ms": 10000})
    producer.produce(readable, b"refused", on_delivery=lambda err, msg: errors.append(err))
    producer.flush(20)
    assert errors and errors[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, errors
    # The super user is gone: managing ACLs needs Alter on the cluster now.
    with pytest.raises(KafkaException) as refused:
        create_acls(broker.bootstrap, [acl(readable, "WRITE")])
    assert refused.value.args[0].code() == KafkaError.CLUSTER_AUTHORIZATION_FAILED


def test_super_users_bypass_every_acl(broker_factory):
    broker = broker_factory(authorizer(super_users=f"User:admin;{ANONYMOUS}"))
    topic = unique("guarded")
    create_topic(broker.bootstrap, topic, 1)
    create_acls(broker.bootstrap, [acl(topic, "ALL", permission="DENY")])
    assert raw_produce(broker, topic) == 0
    assert raw_fetch(broker, topic) == 0


def test_prefixed_acl_covers_topics_created_later(broker_factory):
    broker = broker_factory(authorizer(super_users=ANONYMOUS))
    create_acls(broker.bootstrap, [
        acl("team-a.", "ALL", pattern="PREFIXED"),
        acl("kafka-cluster", "IDEMPOTENT_WRITE", resource="BROKER"),
    ])
    broker.settings["super.users"] = ""
    broker.stop()
    broker.restart()
    later = "team-a." + uuid.uuid4().hex[:6]
    create_topic(broker.bootstrap, later, 1)  # Create on the prefix
    assert raw_produce(broker, later) == 0
    assert raw_fetch(broker, later) == 0
    other = unique("team-b")
    with pytest.raises(KafkaException) as refused:
        create_topic(broker.bootstrap, other, 1)
    assert refused.value.args[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED


def test_allow_everyone_if_no_acl_found(broker_factory):
    broker = broker_factory(authorizer(super_users=ANONYMOUS))
    free, owned = unique("free"), unique("owned")
    for topic in (free, owned):
        create_topic(broker.bootstrap, topic, 1)
    create_acls(broker.bootstrap, [acl(owned, "ALL", principal="User:alice")])
    broker.settings.update(authorizer(allow_if_no_acl=True))
    broker.stop()
    broker.restart()
    # No ACL on `free`: open to everyone. `owned` has ACLs, none for ANONYMOUS: closed.
    assert raw_produce(broker, free) == 0
    assert raw_produce(broker, owned) == TOPIC_AUTHORIZATION_FAILED
    assert raw_fetch(broker, owned) == TOPIC_AUTHORIZATION_FAILED
    broker.settings.update(authorizer(allow_if_no_acl=False))
    broker.stop()
    broker.restart()
    assert raw_produce(broker, free) == TOPIC_AUTHORIZATION_FAILED


def test_metadata_lists_only_describable_topics_and_group_acls_gate_joining(broker_factory):
    broker = broker_factory(authorizer(super_users=ANONYMOUS))
    seen, hidden = unique("seen"), unique("hidden")
    for topic in (seen, hidden):
        create_topic(broker.bootstrap, topic, 1)
    create_acls(broker.bootstrap, [
        acl(seen, "DESCRIBE"),
        acl("allowed-", "READ", resource="GROUP", pattern="PREFIXED"),
    ])
    broker.settings["super.users"] = ""
    broker.stop()
    broker.restart()
    listed = metadata_topics(broker)
    assert seen in listed and hidden not in listed, listed
    with w.Conn(broker.host, broker.port) as c:
        _, named = w.metadata_v1(c, [hidden])
    assert named[hidden][0] == TOPIC_AUTHORIZATION_FAILED

    assert group_errors(broker, unique("denied")) == (GROUP_AUTHORIZATION_FAILED,) * 2
    found, joined = group_errors(broker, "allowed-" + uuid.uuid4().hex[:6])
    assert found == 0 and joined == w.MEMBER_ID_REQUIRED, (found, joined)


def spate_acl(broker, *args, check=True) -> subprocess.CompletedProcess:
    argv = [str(SPATE_BIN), "acl", *args, "--brokers", broker.bootstrap]
    p = subprocess.run(argv, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert not check or p.returncode == 0, f"{argv} exited {p.returncode}\n{p.stdout}\n{p.stderr}"
    return p


def test_spate_acl_add_list_remove(broker_factory):
    broker = broker_factory(authorizer(super_users=ANONYMOUS))
    spate_acl(broker, "add", "--principal", "User:carol", "--operation", "Read", "--operation",
              "Describe", "--topic", "events.", "--prefixed")
    spate_acl(broker, "add", "--principal", "User:carol", "--operation", "Write", "--deny",
              "--topic", "events.audit")
    assert describe_acls(broker.bootstrap) == {
        ("TOPIC", "events.", "PREFIXED", "User:carol", "*", "READ", "ALLOW"),
        ("TOPIC", "events.", "PREFIXED", "User:carol", "*", "DESCRIBE", "ALLOW"),
        ("TOPIC", "events.audit", "LITERAL", "User:carol", "*", "WRITE", "DENY"),
    }
    # `list --topic` shows every ACL that applies to the topic, prefixes included.
    listed = json.loads(spate_acl(broker, "list", "--topic", "events.audit", "--json").stdout)
    assert sorted((a["name"], a["operation"], a["permission"]) for a in listed) == [
        ("events.", "Describe", "Allow"), ("events.", "Read", "Allow"),
        ("events.audit", "Write", "Deny")]
    removed = spate_acl(broker, "remove", "--principal", "User:carol", "--topic", "events.",
                        "--prefixed").stdout
    assert "removed 2 ACL(s)" in removed
    assert describe_acls(broker.bootstrap) == {
        ("TOPIC", "events.audit", "LITERAL", "User:carol", "*", "WRITE", "DENY")}
    bad = spate_acl(broker, "add", "--principal", "carol", "--operation", "Read", "--topic", "t",
                    check=False)
    assert bad.returncode != 0 and "INVALID_REQUEST" in bad.stderr, bad.stderr


def test_acls_created_on_one_node_are_enforced_on_every_node_of_a_cluster():
    from cluster_faults import start_cluster, wait_for

    # No super user: the brokers' own (anonymous) replication needs ClusterAction on the
    # cluster, which no ACL names, so the default lets it through.
    nodes = start_cluster(3, settings=authorizer(allow_if_no_acl=True))
    try:
        topic = unique("shared")
        create_topic(nodes[0].bootstrap, topic, 1, replication_factor=3)
        assert raw_produce(nodes[0], topic) in (0, w.NOT_LEADER_OR_FOLLOWER)
        # With ACLs on the topic the default no longer applies: Read needs its own ALLOW.
        create_acls(nodes[1].bootstrap, [acl(topic, "WRITE", permission="DENY"), acl(topic, "READ")])
        for node in nodes:  # the quorum carries the ACL to every node's image
            wait_for(f"the DENY enforced on node {node.node_id}",
                     lambda n=node: raw_produce(n, topic) == TOPIC_AUTHORIZATION_FAILED)
            assert describe_acls(node.bootstrap) == {
                ("TOPIC", topic, "LITERAL", ANONYMOUS, "*", "WRITE", "DENY"),
                ("TOPIC", topic, "LITERAL", ANONYMOUS, "*", "READ", "ALLOW")}
        # Reads stay allowed on every node (each answers as leader or follower).
        assert all(raw_fetch(n, topic) != TOPIC_AUTHORIZATION_FAILED for n in nodes)
    finally:
        for node in nodes:
            node.stop()
