"""Multi-node clusters on loopback: brokers that join the controller quorum and serve clients.

Each node is a real `spate start --node-id N --controller-quorum ...` process (combined
broker+controller unless a test says otherwise); real clients (confluent-kafka/librdkafka, the
Java client, franz-go, kcat, Kafka's tools) bootstrap from any node and must find every
partition's leader through Metadata, produce and consume, and keep working when a node is
killed. The session timeout is shortened (3 s, heartbeats every 0.5 s) so fencing is quick.
"""

from __future__ import annotations

import collections
import os
import re
import signal
import socket
import subprocess
import time

import pytest

import helpers
import kafka_wire as w
from cluster_faults import SESSION_TIMEOUT_MS, ClusterNode, metadata, start_cluster, wait_for
import suite_ports as ports
from conftest import SPATE_BIN, Broker, free_port
from helpers import consume, kafka_tool, produce, verify
from test_groups import members  # noqa: F401  (a fixture)

pytestmark = pytest.mark.spate_only("Spate's multi-node clusters (the wrapper runs one Kafka node)")

LEADER_NOT_AVAILABLE = 5


def create_topic(bootstrap: str, topic: str, partitions: int, timeout=10.0):
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)],
                                  operation_timeout=timeout, request_timeout=timeout)
    futures[topic].result(timeout)


def leaders_of(node: Broker, topic: str) -> dict[int, int]:
    _, found = metadata(node, [topic])
    err, parts = found[topic]
    assert err == 0, f"{topic}: error {err}"
    return {p: leader for p, (_, leader) in parts.items()}


def all_led(node: Broker, topic: str, partitions: int):
    """The leaders when `node` knows every partition's (a node may not have the topic yet)."""
    _, found = metadata(node, [topic])
    err, parts = found[topic]
    if err != 0:  # (one answer: a second Metadata could say LEADER_NOT_AVAILABLE meanwhile)
        return False
    leaders = {p: leader for p, (_, leader) in parts.items()}
    return len(leaders) == partitions and all(l >= 0 for l in leaders.values()) and leaders


def test_a_twelve_partition_topic_leads_on_every_broker_and_clients_use_any_bootstrap():
    nodes = start_cluster(3)
    for node in nodes:  # every node lists every broker
        assert metadata(node)[0] == [1, 2, 3]
    create_topic(nodes[0].bootstrap, "spread", 12)
    leaders = wait_for("12 leaders seen by every node",
                       lambda: all(all_led(n, "spread", 12) for n in nodes) and leaders_of(nodes[2], "spread"))
    assert collections.Counter(leaders.values()) == {1: 4, 2: 4, 3: 4}, leaders
    for node in nodes:  # one image: every node names the same leaders
        assert leaders_of(node, "spread") == leaders

    # Each client produces through one node and another client reads back through another.
    pairs = [("confluent", 1, "java", 2), ("java", 2, "franz-go", 0), ("franz-go", 0, "kafkajs", 1),
             ("kafkajs", 1, "kafka-python", 2), ("kafka-python", 2, "confluent", 0)]
    for producer, p_node, consumer, c_node in pairs:
        topic = f"spread-{producer}"
        create_topic(nodes[p_node].bootstrap, topic, 12)
        wait_for(f"{topic} led", lambda: all(all_led(n, topic, 12) for n in nodes))
        produce(producer, nodes[p_node].bootstrap, topic, 1200)
        records = consume(consumer, nodes[c_node].bootstrap, topic, 12, 1200)
        verify(records, producer, 1200, nodes[c_node].bootstrap, topic, 12)
        assert {leaders_of(nodes[0], topic)[r["partition"]] for r in records} == {1, 2, 3}


def test_produce_to_the_wrong_broker_gets_not_leader_and_groups_find_their_coordinator():
    nodes = start_cluster(3)
    create_topic(nodes[1].bootstrap, "routed", 6)
    leaders = wait_for("6 leaders", lambda: all(all_led(n, "routed", 6) for n in nodes)
                       and leaders_of(nodes[0], "routed"))
    # A partition asked of a broker that does not lead it: NOT_LEADER_OR_FOLLOWER (6).
    partition, leader = next(iter(leaders.items()))
    other = next(n for n in nodes if n.node_id != leader)
    with w.Conn(other.host, other.port) as c:
        res = w.list_offsets_v1(c, "routed", [partition], -1)
    assert res[partition][0] == 6, res

    # A consumer group through node 3 commits at its coordinator; node 1 reads the commits.
    from confluent_kafka import Consumer, TopicPartition

    produce("confluent", nodes[0].bootstrap, "routed", 600)
    consumer = Consumer({"bootstrap.servers": nodes[2].bootstrap, "group.id": "spread-group",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe(["routed"])
    got, deadline = 0, time.monotonic() + 60
    while got < 600 and time.monotonic() < deadline:
        msg = consumer.poll(0.5)
        if msg is not None and msg.error() is None:
            got += 1
    assert got == 600, f"group consumed {got}/600"
    consumer.commit(asynchronous=False)
    consumer.close()
    reader = Consumer({"bootstrap.servers": nodes[0].bootstrap, "group.id": "spread-group"})
    committed = reader.committed([TopicPartition("routed", p) for p in range(6)], timeout=30)
    reader.close()
    ends = helpers.end_offsets(nodes[1].bootstrap, "routed", 6)
    assert {tp.partition: tp.offset for tp in committed} == ends

    # Deleting the topic through one node deletes every node's partitions of it.
    from confluent_kafka.admin import AdminClient

    dirs = [sorted(p.name for p in n.data_dir.glob("routed-*")) for n in nodes]
    assert sorted(sum(dirs, [])) == sorted(f"routed-{p}" for p in range(6)), dirs
    admin = AdminClient({"bootstrap.servers": nodes[1].bootstrap})
    admin.delete_topics(["routed"], operation_timeout=15)["routed"].result(15)
    wait_for("the topic gone everywhere", lambda: all(
        "routed" not in metadata(n)[1] and not list(n.data_dir.glob("routed-*")) for n in nodes))


def test_kafkajs_and_kafka_python_members_share_a_group_across_the_nodes(members):
    """A group whose members bootstrap from different nodes (kafkajs through node 1, kafka-python
    through node 3) over partitions led by all three: each owns a share, every record is
    consumed once; SIGTERM of the kafkajs member (LeaveGroup) moves its partitions to the
    kafka-python member, which reads on from the commits."""
    from test_groups import PHASE_N, check_exactly_once, need_client, wait_balanced, wait_consumed

    need_client("kafkajs")
    nodes = start_cluster(3)
    create_topic(nodes[1].bootstrap, "shared", 6)
    wait_for("6 leaders on 3 brokers", lambda: all(all_led(n, "shared", 6) for n in nodes)
             and set(leaders_of(nodes[0], "shared").values()) == {1, 2, 3})
    js = members("kafkajs", nodes[0].bootstrap, "shared", "multi-node", "js")
    py = members("kafka-python", nodes[2].bootstrap, "shared", "multi-node", "py")
    wait_balanced([js, py], "two members over three nodes")
    produce("confluent", nodes[1].bootstrap, "shared", PHASE_N)
    wait_consumed([js, py], PHASE_N, "first phase")
    js.terminate()
    wait_balanced([py], "kafka-python alone")
    produce("java", nodes[2].bootstrap, "shared", PHASE_N)
    wait_consumed([js, py], 2 * PHASE_N, "second phase")
    check_exactly_once([js, py], nodes[0].bootstrap, "shared")


def test_create_partitions_places_the_new_partitions_over_the_brokers():
    from confluent_kafka.admin import AdminClient, NewPartitions

    nodes = start_cluster(3)
    create_topic(nodes[0].bootstrap, "growing", 3)
    wait_for("growing led", lambda: all(all_led(n, "growing", 3) for n in nodes))
    admin = AdminClient({"bootstrap.servers": nodes[2].bootstrap})
    admin.create_partitions([NewPartitions("growing", 9)], request_timeout=15)["growing"].result(15)
    # The leaders from one Metadata answer that has all 9 (node 1's shards install a new image
    # one after another, so a second answer from another shard may still show 3 partitions).
    leaders = wait_for("9 partitions led everywhere", lambda: all(all_led(n, "growing", 9) for n in nodes)
                       and all_led(nodes[1], "growing", 9))
    assert collections.Counter(leaders.values()) == {1: 3, 2: 3, 3: 3}, leaders
    produce("franz-go", nodes[1].bootstrap, "growing", 900)
    records = consume("confluent", nodes[0].bootstrap, "growing", 9, 900)
    verify(records, "franz-go", 900, nodes[0].bootstrap, "growing", 9)


@pytest.mark.solo("topic creation within 5 s of kill -9")
@pytest.mark.parametrize("victim_kind", ["active-controller", "other-node"])
def test_kill_9_of_a_node_keeps_creation_working_fences_it_and_it_rejoins(victim_kind):
    nodes = start_cluster(3)
    create_topic(nodes[0].bootstrap, "durable", 12)
    wait_for("durable led", lambda: all(all_led(n, "durable", 12) for n in nodes))
    produce("confluent", nodes[1].bootstrap, "durable", 2400, acks="all")

    active = wait_for("an active controller", nodes[0].active_controller)
    victim = next(n for n in nodes if (n.node_id == active) == (victim_kind == "active-controller"))
    survivors = [n for n in nodes if n is not victim]
    victim.kill()

    # Topic creation through a survivor works within 5 s of the kill.
    killed_at = time.monotonic()
    wait_for("a topic created after the kill",
             lambda: create_topic(survivors[0].bootstrap, "after-kill", 3) or True, timeout=5)
    assert time.monotonic() - killed_at < 5
    for node in survivors:
        wait_for("the new topic on every survivor", lambda: "after-kill" in metadata(node, ["after-kill"])[1]
                 and metadata(node, ["after-kill"])[1]["after-kill"][0] == 0, timeout=5)

    # After the session timeout the victim is fenced: not listed, its partitions offline.
    fenced = wait_for("the victim fenced", lambda: all(victim.node_id not in metadata(n)[0] for n in survivors),
                      timeout=SESSION_TIMEOUT_MS / 1000 + 10)
    assert fenced
    _, found = metadata(survivors[0], ["durable"])
    offline = {p for p, (err, leader) in found["durable"][1].items() if leader == -1}
    assert offline and all(found["durable"][1][p][0] == LEADER_NOT_AVAILABLE for p in offline)
    assert len(offline) == 4  # the victim's share; one replica each, so no other leader

    # It restarts on its data dir, registers again and serves its partitions: nothing lost.
    victim.restart()
    wait_for("the victim listed again", lambda: all(metadata(n)[0] == [1, 2, 3] for n in nodes))
    wait_for("every partition led again", lambda: all(all_led(n, "durable", 12) for n in nodes))
    records = consume("confluent", victim.bootstrap, "durable", 12, 2400)
    verify(records, "confluent", 2400, victim.bootstrap, "durable", 12)
    # No metadata lost: the restarted node knows what was created before and while it was down.
    for node in nodes:
        _, found = metadata(node)
        assert {"durable", "after-kill"} <= set(found), (node.node_id, sorted(found))


def test_broker_only_nodes_follow_a_controller_only_quorum():
    controller_port = free_port()
    voter = ClusterNode(1, {1: controller_port}, roles="controller")
    brokers = [ClusterNode(i, {1: controller_port}, roles="broker") for i in (2, 3)]
    voter.spawn()  # a controller-only node prints no Kafka 'ready' line: wait for its port
    wait_for("the voter listening", lambda: socket.create_connection(("127.0.0.1", controller_port), 1).close()
             or True, timeout=30)
    for b in brokers:
        b.start()
    assert metadata(brokers[0])[0] == [2, 3]
    create_topic(brokers[1].bootstrap, "two-brokers", 4)
    leaders = wait_for("4 leaders", lambda: all(all_led(b, "two-brokers", 4) for b in brokers)
                       and leaders_of(brokers[0], "two-brokers"))
    assert collections.Counter(leaders.values()) == {2: 2, 3: 2}
    lines = "".join(f"k{i}:v{i}\n" for i in range(200))
    subprocess.run(["kcat", "-b", brokers[0].bootstrap, "-P", "-t", "two-brokers", "-K:"],
                   input=lines, text=True, check=True, timeout=60)
    out = subprocess.run(["kcat", "-b", brokers[1].bootstrap, "-C", "-t", "two-brokers", "-o", "beginning",
                          "-e", "-f", "%k=%s\n"], capture_output=True, text=True, check=True, timeout=60)
    assert sorted(out.stdout.split()) == sorted(f"k{i}=v{i}" for i in range(200))


def test_kafka_metadata_quorum_tool_describes_the_three_voters():
    nodes = start_cluster(3)
    tool = "org.apache.kafka.tools.MetadataQuorumCommand"
    status_text = wait_for("kafka-metadata-quorum describes the quorum", lambda: (lambda p: p.returncode == 0
                           and p.stdout)(kafka_tool(tool, "--bootstrap-server", nodes[1].bootstrap, "describe",
                                                    "--status", check=False)), timeout=60)
    status = dict(line.split(":", 1) for line in status_text.splitlines() if ":" in line)
    active = nodes[0].active_controller()
    assert int(status["LeaderId"]) == active
    for node_id, node in enumerate(nodes, start=1):
        controller_port = node.quorum.split(",")[node_id - 1].rsplit(":", 1)[1]
        assert f"CONTROLLER://127.0.0.1:{controller_port}" in status["CurrentVoters"], status
    replication = kafka_tool(tool, "--bootstrap-server", nodes[2].bootstrap, "describe",
                             "--replication").stdout.splitlines()
    rows = {int(r.split()[0]): r.split()[-1] for r in replication[1:] if r.strip()}
    assert rows[active] == "Leader" and sorted(rows) == [1, 2, 3], replication


def test_dev_cluster_starts_three_nodes_and_stops_them():
    base = free_base_port()
    data = Broker("dev-cluster").data_dir
    proc = subprocess.Popen([str(SPATE_BIN), "dev-cluster", "--nodes", "3", "--base-port", str(base),
                             "--data-dir", str(data)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)  # its nodes: one process group
    try:
        lines = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            assert line, f"dev-cluster exited: {''.join(lines)}"
            lines.append(line)
            if "dev-cluster ready" in line:
                break
        bootstrap = ",".join(f"127.0.0.1:{base + i}" for i in range(3))
        assert bootstrap in lines[-1], lines
        out = subprocess.run(["kcat", "-b", f"127.0.0.1:{base + 2}", "-L", "-J"], capture_output=True,
                             text=True, check=True, timeout=30).stdout
        import json

        assert sorted(b["id"] for b in json.loads(out)["brokers"]) == [1, 2, 3]
        proc.send_signal(signal.SIGTERM)
        rest, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0, rest
        assert "dev-cluster stopped" in rest
        for i in range(3):  # every node's port is closed again
            with pytest.raises(OSError):
                socket.create_connection(("127.0.0.1", base + i), timeout=1).close()
    finally:
        try:  # dev-cluster and any node it left: its process group, nothing else
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(10)


def free_base_port() -> int:
    """A port P with P..P+2 and P+100..P+102 free (and no other test's: all 103 reserved)."""
    return ports.free_ports(span=103)


def test_a_broker_that_cannot_reach_the_quorum_says_so_and_is_not_ready():
    dead_port = free_port()  # nothing listens there
    node = ClusterNode(2, {1: dead_port}, roles="broker")
    node.spawn()
    try:
        line = wait_for("the broker saying why it waits", lambda: re.search(
            r"broker 2 waiting \d+s for the controller quorum: (.+)",
            node.log_path.read_text(encoding="utf-8", errors="replace")), timeout=20)
        assert str(dead_port) in line.group(1) or "refused" in line.group(1), line.group(0)
        assert not node._ready.is_set() and node.alive()
        with pytest.raises(OSError):  # no Kafka listener while it waits
            socket.create_connection(("127.0.0.1", node.port), timeout=1).close()
    finally:
        node.stop()


def test_a_data_dir_keeps_to_one_kind_of_node_and_one_cluster():
    # A single node's data dir is refused to a cluster node, and a cluster node's to a single node.
    single = Broker("single").start()
    single.stop()
    port = free_port()
    node = ClusterNode(1, {1: port})
    node.data_dir = single.data_dir
    out = subprocess.run(node.argv(), capture_output=True, text=True, timeout=60)
    assert out.returncode != 0 and "single-node broker's metadata" in out.stderr, out.stderr

    first = ClusterNode(1, {1: free_port()})
    first.start()
    first.stop()
    single.data_dir = first.data_dir
    out = subprocess.run(single.argv(), capture_output=True, text=True, timeout=60)
    assert out.returncode != 0 and "belongs to a node of a multi-node cluster" in out.stderr, out.stderr

    # A broker's data dir is bound to its cluster: another quorum (a new cluster id) is refused.
    broker_dir = ClusterNode(2, {1: first.quorum_port()}, roles="broker")
    first.start()
    broker_dir.start()
    broker_dir.stop()
    first.stop()
    other_voter = ClusterNode(1, {1: free_port()}, roles="controller")
    other_voter.spawn()
    stranger = ClusterNode(2, {1: other_voter.quorum_port()}, roles="broker")
    stranger.data_dir = broker_dir.data_dir
    out = subprocess.run(stranger.argv(), capture_output=True, text=True, timeout=60)
    assert out.returncode != 0 and "belongs to cluster" in out.stderr, out.stderr
