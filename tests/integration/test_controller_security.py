"""The controller port's security (issue 19, between nodes): the listener Kafka's
`controller.listener.names` names, its protocol from `listener.security.protocol.map`, its
`listener.name.controller.*` TLS and SASL settings. Real 3-node clusters of combined nodes whose
voters and brokers reach the quorum over SSL with client certificates required, or over
SASL_SSL with PLAIN; a node with a certificate of another CA, the wrong password or no
ClusterAction stays out and the voters say why once; a real client (confluent-kafka) produces
and consumes meanwhile; `spate cluster-admin --command-config` reaches the secured port."""

from __future__ import annotations

import os
import subprocess
import time

import pytest

from cluster_faults import Cluster, ClusterNode, wait_for
from conftest import SPATE_BIN, free_port
from helpers import create_topic
from security import PLAIN_MODULE, client_properties, make_pki

AUTHORIZER = "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
NODE = {"O": "spate", "CN": "spate-node"}
ROGUE = {"O": "spate", "CN": "rogue-node"}
N = 50
pytestmark = pytest.mark.spate_only("a multi-node cluster and its controller port")


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_pki(tmp_path_factory.mktemp("controller-pki"),
                    nodes={"node": (NODE, "ca"), "rogue": (ROGUE, "other-ca")})


@pytest.fixture
def start(request, monkeypatch):
    """start(settings_of(node) -> dict, joiners=()) -> (Cluster of voters 1-3, {id: joiner}):
    three combined nodes, ready, then a broker-only node per id of `joiners`, started but not
    awaited; every node is killed after the test."""
    monkeypatch.setenv("SPATE_LOG", "info,broker::cluster=debug")
    made: list[ClusterNode] = []

    def run(settings_of, joiners=()):
        quorum = {i: free_port() for i in (1, 2, 3)}
        voters = [ClusterNode(i, quorum) for i in (1, 2, 3)]
        others = {i: ClusterNode(i, quorum, roles="broker") for i in joiners}
        for node in voters + list(others.values()):
            node.settings.update(settings_of(node))
            made.append(node)
        for node in voters:
            node.spawn()
        for node in voters:
            node.await_ready()
        for node in others.values():
            node.spawn()
        return Cluster(voters), others

    yield run
    failed = getattr(request.node, "rep_call", None) is not None and request.node.rep_call.failed
    Cluster(made).close(keep=failed or bool(os.environ.get("SPATE_IT_KEEP")), show_logs=failed)


def produce_and_consume(cluster, topic, n=N) -> list[bytes]:
    """n records with acks=all to a new RF=3 topic, read back by a consumer."""
    from confluent_kafka import Consumer, Producer, TopicPartition

    create_topic(cluster.node(1).bootstrap, topic, 1, replication_factor=3)
    cluster.wait_full_isr(topic, 1, rf=3)
    p = Producer({"bootstrap.servers": cluster.bootstrap(), "acks": "all", "message.timeout.ms": 30000})
    errors = []
    for i in range(n):
        p.produce(topic, value=f"{topic}-{i}".encode(), on_delivery=lambda e, m: e and errors.append(e))
    assert p.flush(40) == 0 and not errors, errors
    c = Consumer({"bootstrap.servers": cluster.bootstrap(), "group.id": f"g-{topic}",
                  "enable.auto.commit": False})
    c.assign([TopicPartition(topic, 0, 0)])
    got, deadline = [], time.monotonic() + 30
    while len(got) < n and time.monotonic() < deadline:
        m = c.poll(0.5)
        if m is not None and m.error() is None:
            got.append(m.value())
    c.close()
    assert got == [f"{topic}-{i}".encode() for i in range(n)]
    return got


def stays_out(cluster, node, why: str, refusal: str):
    """`node` never registers: it says why it waits (`why`), every voter logs the refusal
    once, and the cluster's brokers are still 1-3."""
    log = node.wait_for_log("s for the controller quorum: ", timeout=30)
    waiting = [ln for ln in log.splitlines() if "s for the controller quorum: " in ln]
    assert why in waiting[0], waiting
    voter_logs = {}
    for voter in cluster.brokers:
        wait_for(f"a voter refusing node {node.node_id}",
                 lambda: refusal in voter.log_path.read_text(errors="replace"), timeout=20)
        voter_logs[voter.node_id] = voter.log_path.read_text(errors="replace")
    time.sleep(2)  # it keeps retrying every 200 ms: still one line per voter
    for voter in cluster.brokers:
        lines = [ln for ln in voter.log_path.read_text(errors="replace").splitlines()
                 if refusal in ln and "refusing a connection" in ln]
        assert len(lines) == 1, lines
    assert node.alive()
    assert cluster.live_brokers() == [1, 2, 3]


def ssl_controller(pki, keystore) -> dict:
    """The controller listener on SSL, client certificates required, principals mapped from
    the certificate's CN; the nodes' principal is a super user (and the PLAINTEXT clients')."""
    return {
        "controller.listener.names": "CONTROLLER",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:SSL",
        "listener.name.controller.ssl.keystore.location": keystore,
        "listener.name.controller.ssl.truststore.location": pki["ca"],
        "listener.name.controller.ssl.client.auth": "required",
        "listener.name.controller.ssl.principal.mapping.rules": "RULE:^CN=([^,]+),O=spate$/$1/,DEFAULT",
        "authorizer.class.name": AUTHORIZER,
        "super.users": "User:spate-node;User:ANONYMOUS",
    }


def test_an_mtls_controller_listener_forms_the_quorum_and_keeps_out_a_node_of_another_ca(start, pki):
    cluster, joiners = start(lambda node: ssl_controller(pki, pki["rogue_pem" if node.node_id == 4 else "node_pem"]),
                             joiners=(4,))
    node1 = cluster.node(1)
    log = node1.wait_for_log("controller ready")
    assert "protocol=\"SSL\"" in log or "protocol=SSL" in log
    node1.wait_for_log("principal=User:spate-node")
    produce_and_consume(cluster, "ctl-mtls")
    stays_out(cluster, joiners[4], "received fatal alert: UnknownCA", "TLS handshake failed: invalid peer certificate")
    produce_and_consume(cluster, "ctl-mtls-after")


def sasl_controller(pki, user, password, voter=True) -> dict:
    """The controller listener on SASL_SSL with PLAIN (TLS without client certificates); a
    voter's users `node` (a super user) and `intruder` (no ClusterAction); the node's own
    credentials `user` (all a broker-only node needs)."""
    users = ' user_node="node-secret" user_intruder="intruder-secret"' if voter else ""
    jaas = f'{PLAIN_MODULE} required username="{user}" password="{password}"{users};'
    return {
        "controller.listener.names": "CONTROLLER",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:SASL_SSL",
        "listener.name.controller.ssl.keystore.location": pki["node_pem"],
        "listener.name.controller.ssl.truststore.location": pki["ca"],
        "sasl.mechanism.controller.protocol": "PLAIN",
        "listener.name.controller.sasl.enabled.mechanisms": "PLAIN",
        "listener.name.controller.plain.sasl.jaas.config": jaas,
        "authorizer.class.name": AUTHORIZER,
        "super.users": "User:node;User:ANONYMOUS",
    }


def test_a_sasl_ssl_controller_listener_admits_plain_users_with_cluster_action_only(start, pki, tmp_path):
    credentials = {4: ("node", "wrong-secret"), 5: ("intruder", "intruder-secret")}

    def settings(node):
        return sasl_controller(pki, *credentials.get(node.node_id, ("node", "node-secret")),
                               voter=node.node_id <= 3)

    cluster, joiners = start(settings, joiners=(4, 5))
    node1 = cluster.node(1)
    node1.wait_for_log("principal=User:node")
    produce_and_consume(cluster, "ctl-sasl")
    stays_out(cluster, joiners[4], "SaslAuthenticationFailed", "SASL authentication failed (user node)")
    stays_out(cluster, joiners[5], "refused: User:intruder is not authorized on the controller port",
              "User:intruder is not authorized on the controller port")
    for node in cluster.brokers + list(joiners.values()):
        said = "\n".join(ln for ln in node.log_path.read_text(errors="replace").splitlines()
                         if not ln.startswith("====="))  # the harness's line with the argv
        assert "node-secret" not in said and "wrong-secret" not in said

    # The operators' window reaches the secured port with Kafka client properties.
    props = client_properties(tmp_path / "ctl.properties", "SASL_SSL", truststore=pki["ca"],
                              mechanism="PLAIN", user="node", password="node-secret")
    out = subprocess.run([str(SPATE_BIN), "cluster-admin", "--controller-quorum", node1.quorum,
                          "--command-config", str(props), "describe"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "broker 1 " in out.stdout and "topic ctl-sasl " in out.stdout, out.stdout
    plain = subprocess.run([str(SPATE_BIN), "cluster-admin", "--controller-quorum", node1.quorum, "describe"],
                           capture_output=True, text=True, timeout=60)
    assert plain.returncode != 0
