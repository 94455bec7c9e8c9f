"""Multi-node mode: the cluster flags of `spate start` and the controller quorum over TCP.

Voters run as `spate start --roles controller` processes on loopback ports; the tests read who
the active controller is from their logs ("active controller is node N (term T)").
"""

from __future__ import annotations

import re
import subprocess
import time

import pytest

from conftest import SPATE_BIN, Broker, free_port

pytestmark = pytest.mark.spate_only("Spate's multi-node flags and controller quorum (the wrapper runs one Kafka node)")

LEADER_LINE = re.compile(r"active controller is node (\d+) \(term (\d+)\)")


class ControllerNode(Broker):
    """A controller-only voter; `port` is its controller listener."""

    def __init__(self, name: str, node_id: int, quorum: str, port: int):
        super().__init__(name)
        self.node_id = node_id
        self.quorum = quorum
        self.port = port

    def argv(self) -> list[str]:
        return [
            str(SPATE_BIN), "start", "--data-dir", str(self.data_dir),
            "--node-id", str(self.node_id), "--roles", "controller",
            "--controller-quorum", self.quorum,
        ]

    def leader_lines(self) -> list[tuple[int, int]]:
        text = self.log_path.read_text(encoding="utf-8", errors="replace")
        return [(int(t), int(n)) for n, t in LEADER_LINE.findall(text)]

    def leader(self) -> tuple[int, int] | None:
        """(term, node) of the last active controller this voter logged."""
        lines = self.leader_lines()
        return lines[-1] if lines else None


def quorum_of(ports: list[int]) -> str:
    return ",".join(f"{i + 1}@127.0.0.1:{p}" for i, p in enumerate(ports))


def wait_for(what, predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"not within {timeout}s: {what}")


def agreed_leader(nodes):
    leaders = {n.leader() for n in nodes}
    if len(leaders) == 1 and None not in leaders:
        return leaders.pop()
    return None


def refused(*args: str) -> str:
    proc = subprocess.run([str(SPATE_BIN), "start", *args], capture_output=True, text=True, timeout=30)
    assert proc.returncode != 0, proc
    return proc.stderr


@pytest.mark.parametrize(
    "args,message",
    [
        (["--node-id", "1", "--controller-quorum", "1@127.0.0.1:1,2@127.0.0.1:2"], "must have 1, 3 or 5"),
        (["--node-id", "1", "--controller-quorum", "1@h:1,2@h:2,3@h:3,4@h:4"], "must have 1, 3 or 5"),
        (["--node-id", "1", "--controller-quorum", "1@h:1,1@h:2,3@h:3"], "names a node id twice"),
        (["--node-id", "7", "--roles", "controller", "--controller-quorum", "1@h:1,2@h:2,3@h:3"],
         "not in --controller-quorum"),
        (["--node-id", "1", "--controller-quorum", "1@nowhere"], "not HOST:PORT"),
        (["--node-id", "1", "--roles", "leader", "--controller-quorum", "1@h:1"], "unknown role"),
    ],
)
def test_bad_cluster_configuration_is_refused_clearly(args, message):
    assert message in refused(*args)


@pytest.mark.solo("a new controller within 5 s of kill -9")
def test_three_voters_elect_one_controller_and_fail_over_after_kill_9():
    ports = [free_port() for _ in range(3)]
    quorum = quorum_of(ports)
    nodes = [ControllerNode(f"voter{i + 1}", i + 1, quorum, ports[i]) for i in range(3)]
    for n in nodes:
        n.start()
    term, leader = wait_for("one active controller agreed by all voters", lambda: agreed_leader(nodes), 10)
    victim = nodes[leader - 1]
    victim.kill()
    survivors = [n for n in nodes if n is not victim]
    new_term, new_leader = wait_for(
        "a new active controller after kill -9 of the old one",
        lambda: (lambda a: a if a and a[1] != leader else None)(agreed_leader(survivors)),
        5,
    )
    assert new_term > term
    victim.restart()
    wait_for("the restarted voter follows the new controller",
             lambda: victim.leader() == (new_term, new_leader) or None, 5)
    # Never two active controllers in one term, as any voter saw it.
    seen: dict[int, int] = {}
    for n in nodes:
        for t, node in n.leader_lines():
            assert seen.setdefault(t, node) == node, f"two leaders in term {t}"


def admin(quorum: str, *args: str) -> str:
    proc = subprocess.run([str(SPATE_BIN), "cluster-admin", "--controller-quorum", quorum, *args],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def described(quorum: str, node: int) -> list[str] | None:
    """The image voter `node` holds, as `spate cluster-admin describe` prints it; None while it
    has none (a voter still catching up after a restart)."""
    proc = subprocess.run([str(SPATE_BIN), "cluster-admin", "--controller-quorum", quorum,
                           "describe", "--node", str(node)], capture_output=True, text=True, timeout=60)
    return proc.stdout.splitlines() if proc.returncode == 0 else None


@pytest.mark.solo("topic creation within 5 s of kill -9")
def test_metadata_survives_kill_9_of_any_voter_including_the_active_controller():
    ports = [free_port() for _ in range(3)]
    quorum = quorum_of(ports)
    nodes = [ControllerNode(f"meta{i + 1}", i + 1, quorum, ports[i]) for i in range(3)]
    for n in nodes:
        n.start()
    for b in (1, 2, 3):
        admin(quorum, "register-broker", str(b), f"127.0.0.1:{9000 + b}", "2")
    admin(quorum, "create-topic", "twelve", "12")
    lines = described(quorum, 1)
    topic = next(line for line in lines if line.startswith("topic twelve "))
    brokers = topic.split()[-1].split(",")
    assert sorted(brokers.count(b) for b in "123") == [4, 4, 4], topic

    for round_, victim_of in enumerate([lambda leader: leader, lambda leader: leader % 3 + 1]):
        _, leader = wait_for("an active controller", lambda: agreed_leader([n for n in nodes if n.alive()]), 10)
        victim = nodes[victim_of(leader) - 1]
        victim.kill()
        started = time.monotonic()
        admin(quorum, "create-topic", f"after-kill-{round_}", "3")  # retries until a controller answers
        assert time.monotonic() - started < 5.0, "topic creation took 5 s or more after kill -9"
        victim.restart()

    want = wait_for("identical images on all voters",
                    lambda: (lambda imgs: imgs[0] if imgs[0] and all(i == imgs[0] for i in imgs) else None)(
                        [described(quorum, n.node_id) for n in nodes]), 10)
    names = {line.split()[1] for line in want if line.startswith("topic ")}
    assert names == {"twelve", "after-kill-0", "after-kill-1"}
    assert sum(line.startswith("broker ") for line in want) == 3


def test_a_voter_without_a_majority_says_which_voters_it_cannot_reach():
    ports = [free_port() for _ in range(3)]  # voters 2 and 3 are never started
    node = ControllerNode("lonely", 1, quorum_of(ports), ports[0])
    node.start()
    log = lambda: node.log_path.read_text(encoding="utf-8", errors="replace")  # noqa: E731
    wait_for("a no-quorum warning", lambda: "no controller quorum" in log(), 15)
    warning = next(line for line in log().splitlines() if "no controller quorum" in line)
    assert "a majority of the 3 voters" in warning, warning
    for missing in (2, 3):
        assert f"node {missing} at 127.0.0.1:{ports[missing - 1]}" in warning, warning
    assert node.alive(), "a voter without a quorum waits; it does not exit"
    assert node.leader() is None, "one voter of three never becomes the active controller"


def test_a_data_dir_keeps_its_quorum():
    port = free_port()
    node = ControllerNode("solo", 1, f"1@127.0.0.1:{port}", port)
    node.start()
    wait_for("a single voter leads itself", lambda: node.leader() and node.leader()[1] == 1)
    node.stop()
    other = [free_port(), free_port()]
    node.quorum = quorum_of([port] + other)
    proc = subprocess.run(node.argv(), capture_output=True, text=True, timeout=30)
    assert proc.returncode != 0
    assert "created by voters [1]" in proc.stderr, proc.stderr


def metadata_quorum(bootstrap, *args):
    from helpers import kafka_tool

    return kafka_tool("org.apache.kafka.tools.MetadataQuorumCommand", "--bootstrap-server", bootstrap, *args).stdout


def test_kafka_metadata_quorum_tool_describes_a_single_node(broker):
    from helpers import create_topic

    create_topic(broker.bootstrap, "bump-the-metadata", 1)
    status = dict(
        line.split(":", 1) for line in metadata_quorum(broker.bootstrap, "describe", "--status").splitlines()
        if ":" in line
    )
    assert status["LeaderId"].strip() == "1"
    assert int(status["HighWatermark"]) >= 2  # ClusterInit and the topic
    assert f"CONTROLLER://127.0.0.1:{broker.port}" in status["CurrentVoters"]
    replication = metadata_quorum(broker.bootstrap, "describe", "--replication").splitlines()
    leader_rows = [r.split() for r in replication[1:] if r.strip()]
    assert [(row[0], row[-1]) for row in leader_rows] == [("1", "Leader")]
