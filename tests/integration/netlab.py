"""Network namespaces a test creates for a cluster whose links it can cut.

A loopback cluster cannot lose a link between two nodes while both stay reachable from the
test's clients: every node is 127.0.0.1. `NetLab` gives each node its own network namespace
(its own stack, address 10.213.K.N), all joined by a bridge in a hub namespace, with the test
process (the root namespace) on the same bridge as 10.213.K.254, so clients reach every node.

`cut(a, b)` adds blackhole routes for each other's address in both nodes' namespaces: packets
between them vanish (established connections too; nothing is refused, as on a real partition)
while each still talks to the clients and to the nodes it is not cut from. `heal` removes
them. `isolate(a)` cuts a node from every other node.

Traffic stays inside namespaces the test made. Everything is torn down by `close()` (nodes'
namespaces, then the hub, whose deletion destroys the root side of its link); names carry the
test process id, so a crashed run's leftovers never collide with the next run's, and
`sweep_stale()` deletes namespaces of processes that no longer exist.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest

from cluster_faults import FAST_FENCING, Cluster, ClusterNode, check_settings_known, wait_for

PREFIX = "spt"
KAFKA_PORT, QUORUM_PORT, ADMIN_PORT = 9092, 9093, 9644


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=20, check=check)


def unavailable_reason() -> str | None:
    """Why this machine cannot make network namespaces (None when it can)."""
    if shutil.which("ip") is None:
        return "the `ip` tool (iproute2) is not installed"
    if os.geteuid() != 0:
        return "network namespaces need root"
    probe = f"{PREFIX}{os.getpid()}probe"
    made = _ip("netns", "add", probe, check=False)
    if made.returncode != 0:
        return f"`ip netns add` failed: {made.stderr.strip()}"
    _ip("netns", "del", probe, check=False)
    return None


def sweep_stale():
    """Deletes namespaces left by test processes that no longer run (a killed pytest)."""
    listed = _ip("netns", "list", check=False).stdout
    for name in re.findall(rf"^({PREFIX}(\d+)\S*)", listed, re.M):
        ns, pid = name[0], int(name[1])
        if pid != os.getpid() and not os.path.exists(f"/proc/{pid}"):
            _ip("netns", "del", ns, check=False)


class NetLab:
    """A hub bridge, the root namespace on it, and one namespace per node 1..n."""

    def __init__(self, n: int):
        self.tag = f"{PREFIX}{os.getpid()}"
        self.hub = f"{self.tag}hub"
        self.net = f"10.213.{os.getpid() % 200 + 20}"
        self.nodes = list(range(1, n + 1))
        self.cuts: set[tuple[int, int]] = set()
        self.made: list[str] = []
        sweep_stale()
        try:
            self._build()
        except BaseException:
            self.close()
            raise

    def ns(self, node: int) -> str:
        return f"{self.tag}n{node}"

    def address(self, node: int) -> str:
        return f"{self.net}.{node}"

    def _add_ns(self, name: str):
        _ip("netns", "add", name)
        self.made.append(name)
        _ip("-n", name, "link", "set", "lo", "up")

    def _build(self):
        self._add_ns(self.hub)
        _ip("-n", self.hub, "link", "add", "br0", "type", "bridge")
        _ip("-n", self.hub, "link", "set", "br0", "up")
        root_if = f"{self.tag}r"[:15]
        _ip("link", "add", root_if, "type", "veth", "peer", "name", "r0", "netns", self.hub)
        _ip("-n", self.hub, "link", "set", "r0", "master", "br0", "up")
        _ip("addr", "add", f"{self.net}.254/24", "dev", root_if)
        _ip("link", "set", root_if, "up")
        for node in self.nodes:
            ns = self.ns(node)
            self._add_ns(ns)
            _ip("-n", self.hub, "link", "add", f"n{node}", "type", "veth", "peer", "name", "eth0", "netns", ns)
            _ip("-n", self.hub, "link", "set", f"n{node}", "master", "br0", "up")
            _ip("-n", ns, "addr", "add", f"{self.address(node)}/24", "dev", "eth0")
            _ip("-n", ns, "link", "set", "eth0", "up")

    def exec_prefix(self, node: int) -> list[str]:
        """argv prefix that runs a command inside the node's namespace."""
        return ["ip", "netns", "exec", self.ns(node)]

    def cut(self, a: int, b: int):
        """Packets between nodes a and b are dropped, both ways, until `heal(a, b)`."""
        for src, dst in ((a, b), (b, a)):
            _ip("-n", self.ns(src), "route", "add", "blackhole", f"{self.address(dst)}/32")
        self.cuts.add((min(a, b), max(a, b)))

    def heal(self, a: int, b: int):
        for src, dst in ((a, b), (b, a)):
            _ip("-n", self.ns(src), "route", "del", "blackhole", f"{self.address(dst)}/32", check=False)
        self.cuts.discard((min(a, b), max(a, b)))

    def isolate(self, node: int):
        """Cuts `node` from every other node; clients in the root namespace still reach it."""
        for other in self.nodes:
            if other != node:
                self.cut(node, other)

    def rejoin(self, node: int):
        for other in self.nodes:
            if other != node:
                self.heal(node, other)

    def close(self):
        for name in reversed(self.made):  # the nodes', then the hub (and with it the root link)
            _ip("netns", "del", name, check=False)
        self.made.clear()


class NetnsNode(ClusterNode):
    """A cluster node run inside its NetLab namespace: Kafka listener, controller quorum and
    admin endpoint on the namespace's own address, fixed ports (the stack is its own)."""

    def __init__(self, lab: NetLab, node_id: int, settings=None):
        super().__init__(node_id, {i: QUORUM_PORT for i in lab.nodes}, settings=settings)
        self.lab = lab
        self.port, self.admin_port = KAFKA_PORT, ADMIN_PORT
        self.quorum = ",".join(f"{i}@{lab.address(i)}:{QUORUM_PORT}" for i in lab.nodes)

    @property
    def host(self) -> str:
        return self.lab.address(self.node_id)

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def admin_url(self) -> str:
        return f"http://{self.host}:{self.admin_port}"

    def argv(self) -> list[str]:
        argv = super().argv()
        admin = argv.index("--admin-listen")
        argv[admin + 1] = f"{self.host}:{self.admin_port}"
        return self.lab.exec_prefix(self.node_id) + argv


@pytest.fixture
def netns_cluster(request):
    """start(settings, n=3) -> (Cluster, NetLab): n combined broker+controller nodes, each in
    its own network namespace. The test fails (never skips) on a machine that cannot make
    namespaces: the suite runs as root on Linux. Nodes are killed (logs and data kept when the
    test failed) before the namespaces go."""
    labs: list[NetLab] = []
    clusters: list[Cluster] = []

    def start(settings: dict, n: int = 3):
        reason = unavailable_reason()
        if reason:
            pytest.fail(f"network-cut tests need network namespaces: {reason}")
        check_settings_known({**FAST_FENCING, **settings})
        lab = NetLab(n)
        labs.append(lab)
        nodes = [NetnsNode(lab, i, settings) for i in lab.nodes]
        cluster = Cluster(nodes)
        clusters.append(cluster)
        for node in nodes:
            node.spawn()
        for node in nodes:
            node.await_ready()
        wait_for("every node sees the others", lambda: len(cluster.live_brokers()) == n, timeout=30)
        return cluster, lab

    yield start

    failed = any(getattr(request.node, f"rep_{w_}", None) and getattr(request.node, f"rep_{w_}").failed
                 for w_ in ("setup", "call"))
    keep = failed or bool(os.environ.get("SPATE_IT_KEEP"))
    for cluster in clusters:
        cluster.close(keep, show_logs=failed)
    for lab in labs:
        lab.close()
