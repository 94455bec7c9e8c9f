"""Consumer groups (issue #4) with real clients, Kafka's consumer-groups tool, and raw-socket error codes.

Group members are the client programs' `group-consume` mode (tests/README.md): each prints one JSON
line per record, per rebalance event (assigned/revoked/lost with the partitions it owns afterwards),
per successful commit and on exit. Every wait is a poll with a deadline; nothing assumes speed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path

import pytest

import kafka_wire as w
import spate_records as R
from helpers import CLIENT_CMDS, CLIENTS, create_topic, end_offsets, kafka_tool, produce

PARTITIONS = 6
PHASE_N = int(os.environ.get("SPATE_IT_GROUP_RECORDS", "1200"))
SESSION_MS = 6000  # Kafka's default group.min.session.timeout.ms
WAIT_S = 90.0  # generous: 2 shared cores, JVMs starting, rebalances waiting on session timeouts
IT_DIR = Path(os.environ.get("SPATE_IT_DIR", Path(__file__).resolve().parents[2] / "target" / "it"))

PREREQS = {
    "java": CLIENTS / "java" / "classes" / "spate" / "Client.class",
    "franz-go": CLIENTS / "go" / "bin" / "spate-go-client",
    "kafkajs": CLIENTS / "node" / "node_modules" / "kafkajs" / "package.json",
}


def need_client(client):
    pre = PREREQS.get(client)
    if pre is not None and not pre.exists():
        pytest.fail(f"{client} client not built ({pre} missing): run ci/install-deps")


def wait_until(cond, what, diag=lambda: "", timeout=WAIT_S, every=0.2, progress=None, stall_s=45.0):
    """Polls cond() until truthy. With progress (a function returning something comparable), also
    gives up once progress() has not changed for stall_s seconds: a stuck group fails fast."""
    start = time.monotonic()
    deadline = start + timeout
    last_p, last_change = (progress() if progress else None), start
    while True:
        v = cond()
        if v:
            return v
        now = time.monotonic()
        if progress:
            p = progress()
            if p != last_p:
                last_p, last_change = p, now
            elif now - last_change > stall_s:
                raise AssertionError(f"no progress for {stall_s:.0f}s (after {now - start:.0f}s) waiting for "
                                     f"{what}\n{diag()}")
        if now > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}\n{diag()}")
        time.sleep(every)


class Member:
    """One `group-consume` process; its stdout events are collected by a thread."""

    def __init__(self, client, bootstrap, topic, group, name, assignor=None, commit="sync"):
        self.client = client
        self.name = name
        argv = CLIENT_CMDS[client] + [
            "group-consume", "--bootstrap", bootstrap, "--topic", topic, "--group", group,
            "--member-name", name, "--commit", commit, "--session-timeout-ms", str(SESSION_MS),
            "--timeout-s", "900",
        ]
        if assignor:
            argv += ["--assignor", assignor]
        self.argv = argv
        self.err_path = IT_DIR / f"member-{group}-{name}-{os.getpid()}.err"
        self.errf = open(self.err_path, "wb")
        self.lock = threading.Lock()
        self.events: list[dict] = []
        self.records: list[dict] = []
        self.owned: list[int] = []
        self.committed: dict[int, int] = {}
        self.commit_failures: list[str] = []
        self.started_at = time.monotonic()
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=self.errf)
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        for raw in self.proc.stdout:
            line = raw.decode("utf-8", "replace").strip()
            if not line.startswith("{"):
                continue
            try:
                ev = json.loads(line)
            except ValueError:
                continue
            with self.lock:
                kind = ev.get("event")
                if kind == "record":
                    self.records.append(ev)
                    continue
                ev["t"] = time.monotonic()
                ev["n_records"] = len(self.records)
                self.events.append(ev)
                if kind in ("assigned", "revoked", "lost"):
                    self.owned = ev["owned"]
                elif kind == "committed":
                    for p, o in ev["offsets"].items():
                        self.committed[int(p)] = o
                elif kind == "commit_failed":
                    self.commit_failures.append(ev.get("error", ""))

    def alive(self):
        return self.proc.poll() is None

    def snapshot(self):
        with self.lock:
            return list(self.owned), list(self.records), dict(self.committed)

    def count(self):
        with self.lock:
            return len(self.records)

    def fully_committed(self):
        """Every partition this member consumed has its last consumed offset + 1 committed."""
        with self.lock:
            last = {}
            for r in self.records:
                last[r["partition"]] = max(last.get(r["partition"], -1), r["offset"])
            return all(self.committed.get(p) == o + 1 for p, o in last.items())

    def stderr_tail(self, n=2500):
        try:
            return self.err_path.read_bytes().decode("utf-8", "replace")[-n:]
        except OSError:
            return ""

    def describe(self):
        """Compact state for assertion messages: repeated events collapsed, long errors cut."""
        with self.lock:
            evs = []
            for e in self.events:
                e = {k: (v[:160] if isinstance(v, str) else v) for k, v in e.items() if k not in ("t", "member")}
                key = {k: v for k, v in e.items() if k != "n_records"}
                if evs and evs[-1][0] == key:
                    evs[-1][1] += 1
                else:
                    evs.append([key, 1])
            shown = [f"{e}" + (f" x{n}" if n > 1 else "") for e, n in evs[-8:]]
            fails = list(dict.fromkeys(f[:160] for f in self.commit_failures))[:3]
            state = "alive" if self.alive() else f"exit {self.proc.returncode}"
            head = (f"  {self.name} ({self.client}, {state}): owned={self.owned} records={len(self.records)} "
                    f"committed={dict(sorted(self.committed.items()))} commit failures: {len(self.commit_failures)} "
                    f"{fails}")
        err = self.stderr_tail(1500).strip().splitlines()
        err = list(dict.fromkeys(ln[:200] for ln in err))[-4:]
        return head + "\n    last events: " + "\n      ".join(shown) + "\n    stderr (distinct last lines): " + \
            "\n      ".join(err)

    def terminate(self, timeout=60):
        """SIGTERM: the member commits, leaves the group and exits 0."""
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            raise AssertionError(f"member {self.name} did not exit {timeout}s after SIGTERM\n{self.describe()}")
        self.thread.join(10)
        assert rc == 0, f"member {self.name} exited {rc} after SIGTERM\n{self.describe()}"
        with self.lock:
            exits = [e for e in self.events if e["event"] == "exit"]
        assert exits and exits[-1]["reason"] == "signal", f"member {self.name}: no clean exit event\n{self.describe()}"

    def kill9(self):
        if self.alive():
            self.proc.kill()
        self.proc.wait(10)
        self.thread.join(10)

    def cleanup(self):
        if self.alive():
            self.proc.kill()
            self.proc.wait(10)
        self.errf.close()


@pytest.fixture
def members(request):
    made: list[Member] = []

    def start(*a, **kw):
        m = Member(*a, **kw)
        made.append(m)
        return m

    yield start
    failed = any(getattr(request.node, f"rep_{w_}", None) and getattr(request.node, f"rep_{w_}").failed
                 for w_ in ("setup", "call"))
    for m in made:
        m.cleanup()
        if not failed and not os.environ.get("SPATE_IT_KEEP"):
            try:
                m.err_path.unlink()
            except OSError:
                pass


def describe_all(ms, extra=""):
    return "\n".join(m.describe() for m in ms) + (f"\n{extra}" if extra else "")


def balanced(live, partitions=PARTITIONS):
    """Every partition owned by exactly one live member, and every live member owns some."""
    owned = [m.snapshot()[0] for m in live]
    flat = [p for o in owned for p in o]
    return (all(owned) and len(flat) == len(set(flat)) and set(flat) == set(range(partitions))
            and all(m.alive() for m in live))


def wait_balanced(live, what, partitions=PARTITIONS):
    wait_until(lambda: balanced(live, partitions), f"{what}: each of {[m.name for m in live]} owning "
               f"a disjoint share of all {partitions} partitions", lambda: describe_all(live))


def all_records(ms):
    out = []
    for m in ms:
        for r in m.snapshot()[1]:
            out.append((m.name, r))
    return out


def group_progress(ms):
    return tuple((m.count(), tuple(sorted(m.snapshot()[2].items()))) for m in ms)


def wait_consumed(ms, total, what):
    wait_until(lambda: sum(m.count() for m in ms) >= total and all(m.fully_committed() for m in ms if m.alive()),
               f"{what}: {total} records consumed and committed", lambda: describe_all(ms),
               timeout=2 * WAIT_S, progress=lambda: group_progress(ms))


def check_exactly_once(ms, bootstrap, topic, partitions=PARTITIONS):
    """Across all members ever started: every offset below the end offset consumed exactly once."""
    ends = end_offsets(bootstrap, topic, partitions)
    seen = defaultdict(list)
    for name, r in all_records(ms):
        seen[(r["partition"], r["offset"])].append(name)
    dups = {k: v for k, v in seen.items() if len(v) > 1}
    assert not dups, (f"{len(dups)} records consumed more than once, e.g. "
                      f"{sorted(dups.items())[:8]}\n{describe_all(ms)}")
    missing = [(p, o) for p in range(partitions) for o in range(ends[p]) if (p, o) not in seen]
    assert not missing, (f"{len(missing)} records never consumed (end offsets {ends}), e.g. {missing[:8]}\n"
                         f"{describe_all(ms)}")
    extra = [k for k in seen if k[1] >= ends[k[0]]]
    assert not extra, f"records consumed beyond the end offsets {ends}: {extra[:8]}"
    return ends


def check_content(ms, names):
    """Each consumed record is one some producer run in `names` produced (key, value, headers)."""
    bad = []
    for mname, r in all_records(ms):
        hdrs = dict(r["headers"])
        client, i = hdrs.get("client"), int(hdrs.get("i", -1))
        if client not in names:
            bad.append(f"{mname}: unexpected producer {client!r} in {r}")
            continue
        exp = R.expected(client, i)
        for f in ("key", "value", "headers"):
            if r[f] != exp[f]:
                bad.append(f"{mname}: {client} i={i} {f}: got {r[f]!r}, expected {exp[f]!r}")
        if len(bad) > 10:
            break
    assert not bad, "record content mismatches:\n" + "\n".join(bad)


def committed_offsets(bootstrap, group, topic, partitions=PARTITIONS, timeout=60):
    """OffsetFetch v5 over a raw socket, retried while the coordinator is loading after a restart."""
    host, port = bootstrap.rsplit(":", 1)
    last = None

    def fetch():
        nonlocal last
        try:
            with w.Conn(host, int(port)) as c:
                err, offs = w.offset_fetch_v5(c, group, {topic: list(range(partitions))})
        except (OSError, w.Closed) as e:
            last = repr(e)
            return None
        last = (err, offs)
        if err in (w.COORDINATOR_LOAD_IN_PROGRESS, w.COORDINATOR_NOT_AVAILABLE, w.NOT_COORDINATOR):
            return None
        assert err == 0, f"OffsetFetch {group}: error {err}"
        perr = {k: e for k, (_, e) in offs.items() if e}
        if any(e in (w.COORDINATOR_LOAD_IN_PROGRESS, w.UNKNOWN_TOPIC_OR_PARTITION) for e in perr.values()):
            return None
        assert not perr, f"OffsetFetch {group}: partition errors {perr}"
        return {p: o for (_, p), (o, _) in offs.items()}

    return wait_until(fetch, f"OffsetFetch of group {group}", lambda: f"last answer: {last}", timeout=timeout)


# ---------------------------------------------------------------------------------------------
# 3 members per client: balance, exactly once, clean close, kill -9, broker crash + resume
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("client", list(CLIENT_CMDS))
def test_group_lifecycle(broker, members, client):
    need_client(client)
    topic, group = f"grp-{client}", f"group-{client}"
    create_topic(broker.bootstrap, topic, PARTITIONS)
    b = broker.bootstrap
    ms = [members(client, b, topic, group, f"{client}-m{i}") for i in (1, 2, 3)]
    m1, m2, m3 = ms
    wait_balanced(ms, "3 members joined")

    produced = []

    def phase(name):
        produce(client, b, topic, PHASE_N, codec="none", name=name)
        produced.append(name)

    # 1. every record consumed once, by the owner of its partition, and committed
    phase(f"{client}-p1")
    wait_consumed(ms, PHASE_N, "phase 1 (3 members)")
    for m in ms:
        owned, recs, _ = m.snapshot()
        foreign = {r["partition"] for r in recs} - set(owned)
        assert not foreign, f"{m.name} consumed partitions {foreign} it does not own {owned}"
    check_exactly_once(ms, b, topic)

    # 2. a member closes cleanly (LeaveGroup): its partitions move to the other two, nothing lost
    m3.terminate()
    wait_balanced([m1, m2], f"{m3.name} closed")
    phase(f"{client}-p2")
    wait_consumed(ms, 2 * PHASE_N, "phase 2 (after a clean close)")
    check_exactly_once(ms, b, topic)

    # 3. a member is kill -9'ed: after the session timeout its partitions move to the survivor
    m2.kill9()
    wait_balanced([m1], f"{m2.name} killed (session timeout {SESSION_MS} ms)")
    phase(f"{client}-p3")
    wait_consumed(ms, 3 * PHASE_N, "phase 3 (after kill -9 of a member)")
    ends_before = check_exactly_once(ms, b, topic)

    # 4. the broker is kill -9'ed with committed offsets mid-log; a new member resumes exactly there
    m1.terminate()
    committed = committed_offsets(b, group, topic)
    assert committed == ends_before, f"committed offsets {committed} != end offsets {ends_before} after a clean close"
    phase(f"{client}-p4")
    broker.kill()
    broker.restart()
    after = committed_offsets(b, group, topic)
    assert after == committed, f"committed offsets changed across the broker crash: {committed} -> {after}"
    m4 = members(client, b, topic, group, f"{client}-m4")
    ms.append(m4)
    wait_until(lambda: m4.count() >= PHASE_N and m4.fully_committed(),
               f"{m4.name} consuming the {PHASE_N} records produced after the last commit", lambda: describe_all(ms),
               progress=lambda: group_progress([m4]))
    ends = end_offsets(b, topic, PARTITIONS)
    _, recs4, _ = m4.snapshot()
    got = defaultdict(list)
    for r in recs4:
        got[r["partition"]].append(r["offset"])
    for p in range(PARTITIONS):
        want = list(range(committed[p], ends[p]))
        assert sorted(got[p]) == want, (
            f"partition {p}: new member read offsets {sorted(got[p])[:5]}..{sorted(got[p])[-3:]} "
            f"({len(got[p])}), expected exactly {committed[p]}..{ends[p] - 1} (committed offset to end)"
        )
    m4.terminate()
    check_exactly_once(ms, b, topic)
    check_content(ms, produced)
    final = committed_offsets(b, group, topic)
    assert final == ends, f"final committed offsets {final} != end offsets {ends}"


@pytest.mark.parametrize("client", list(CLIENT_CMDS))
def test_auto_commit_on_close(broker, members, client):
    """--commit auto: the client's own auto-commit, plus its commit on close, leaves no lag."""
    need_client(client)
    b = broker.bootstrap
    topic, group, parts, n = f"auto-{client}", f"auto-group-{client}", 3, 300
    create_topic(b, topic, parts)
    produce(client, b, topic, n, codec="none", name=f"auto-{client}")
    m = members(client, b, topic, group, f"auto-{client}-m1", commit="auto")
    wait_until(lambda: m.count() >= n, f"{m.name} consuming {n} records", lambda: describe_all([m]),
               progress=lambda: group_progress([m]))
    m.terminate()
    ends = check_exactly_once([m], b, topic, parts)
    got = committed_offsets(b, group, topic, parts)
    assert got == ends, f"committed offsets {got} != end offsets {ends} after an auto-commit member closed"


# ---------------------------------------------------------------------------------------------
# cooperative-sticky: a third member joins while two consume; kept partitions never stop
# ---------------------------------------------------------------------------------------------
class BackgroundProducer:
    def __init__(self, bootstrap, topic, name):
        from confluent_kafka import Producer

        self.name = name
        self.p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5,
                           "enable.idempotence": True, "message.timeout.ms": 60000})
        self.topic = topic
        self.sent = 0
        self.errors = []
        self.stop = threading.Event()
        self.t = threading.Thread(target=self.run, daemon=True)
        self.t.start()

    def _cb(self, err, _msg):
        if err is not None:
            self.errors.append(str(err))

    def run(self):
        while not self.stop.is_set():
            i = self.sent
            self.p.produce(self.topic, key=R.key(self.name, i).encode(), value=R.value(self.name, i).encode(),
                           headers=[(k, v.encode()) for k, v in R.headers(self.name, i)],
                           timestamp=R.timestamp(i), on_delivery=self._cb)
            self.sent += 1
            self.p.poll(0.004)

    def finish(self):
        self.stop.set()
        self.t.join(10)
        left = self.p.flush(60)
        assert left == 0 and not self.errors, f"background producer: unflushed {left}, errors {self.errors[:3]}"
        return self.sent


@pytest.mark.parametrize("client", ["confluent", "java"])
def test_cooperative_sticky_rebalance(broker, members, client):
    need_client(client)
    topic, group = f"coop-{client}", f"coop-group-{client}"
    b = broker.bootstrap
    create_topic(b, topic, PARTITIONS)
    m1 = members(client, b, topic, group, "coop-m1", assignor="cooperative-sticky")
    m2 = members(client, b, topic, group, "coop-m2", assignor="cooperative-sticky")
    wait_balanced([m1, m2], "2 cooperative members joined")
    prod = BackgroundProducer(b, topic, f"coop-{client}")
    try:
        wait_until(lambda: m1.count() >= 50 and m2.count() >= 50, "both members consuming", lambda: describe_all([m1, m2]))
        before = {m.name: set(m.snapshot()[0]) for m in (m1, m2)}
        n_events = {m.name: len(m.events) for m in (m1, m2)}
        m3 = members(client, b, topic, group, "coop-m3", assignor="cooperative-sticky")
        ms = [m1, m2, m3]
        wait_balanced(ms, "a third cooperative member joined")
        wait_until(lambda: m3.count() >= 20, f"{m3.name} consuming", lambda: describe_all(ms))
        c1 = m1.count() + m2.count()
        wait_until(lambda: m1.count() + m2.count() > c1 + 20, "the first two members still consuming",
                   lambda: describe_all(ms))
    finally:
        total = prod.finish()
    wait_consumed(ms, total, "everything produced during the rebalance")
    for m in (m1, m2):
        after = set(m.snapshot()[0])
        kept = before[m.name] & after
        assert kept, f"{m.name}: owned {sorted(before[m.name])} before, {sorted(after)} after: nothing kept"
        assert after <= before[m.name], f"{m.name} gained partitions {sorted(after - before[m.name])} (not sticky)"
        with m.lock:
            evs = m.events[n_events[m.name]:]
        revoked = {p for e in evs if e["event"] in ("revoked", "lost") for p in e["partitions"]}
        assert not revoked & kept, (
            f"{m.name}: kept partitions {sorted(kept)} were revoked during the rebalance "
            f"(eager, not incremental): {[e for e in evs if e['event'] != 'committed']}"
        )
        assert not [e for e in evs if e["event"] == "lost"], f"{m.name} lost partitions: {evs}"
    # every record of a kept partition was consumed by the member that kept it: no pause/handover
    owners = defaultdict(set)
    for name, r in all_records(ms):
        owners[r["partition"]].add(name)
    for m in (m1, m2):
        for p in before[m.name] & set(m.snapshot()[0]):
            assert owners[p] == {m.name}, f"kept partition {p} consumed by {sorted(owners[p])}"
    check_exactly_once(ms, b, topic)
    check_content(ms, [f"coop-{client}"])
    for m in ms:
        m.terminate()
    assert committed_offsets(b, group, topic) == end_offsets(b, topic, PARTITIONS)


# ---------------------------------------------------------------------------------------------
# Kafka's own kafka-consumer-groups tool
# ---------------------------------------------------------------------------------------------
def consumer_groups(bootstrap, *args, timeout=120):
    p = kafka_tool("org.apache.kafka.tools.consumer.group.ConsumerGroupCommand",
                   "--bootstrap-server", bootstrap, *args, timeout=timeout)
    return p.stdout


def table(out, first_col):
    """Rows of the tool's whitespace-aligned table (header row starts with `first_col`)."""
    lines = [ln.split() for ln in out.splitlines() if ln.strip()]
    for i, ln in enumerate(lines):
        if ln and ln[0] == first_col:
            hdr = ln
            return [dict(zip(hdr, row)) for row in lines[i + 1:] if len(row) == len(hdr)]
    raise AssertionError(f"no table with header {first_col} in:\n{out}")


def test_consumer_groups_tool(broker, members):
    b = broker.bootstrap
    topic, group, parts = "cgtool", "cgtool-group", 3
    create_topic(b, topic, parts)
    produce("confluent", b, topic, 300, codec="none", name="cgtool-a")
    m = members("confluent", b, topic, group, "cgtool-m1")
    wait_until(lambda: m.count() >= 300 and m.fully_committed(), "the member consuming 300 records",
               lambda: describe_all([m]), progress=lambda: group_progress([m]))

    out = consumer_groups(b, "--list")
    assert group in out.split(), f"--list does not show {group}:\n{out}"

    out = consumer_groups(b, "--describe", "--group", group, "--members")
    rows = table(out, "GROUP")
    mine = [r for r in rows if r.get("CLIENT-ID") == "cgtool-m1"]
    assert len(mine) == 1 and mine[0].get("#PARTITIONS") == str(parts), f"--describe --members:\n{out}"

    m.terminate()
    produce("confluent", b, topic, 150, codec="none", name="cgtool-b")
    ends = end_offsets(b, topic, parts)
    committed = committed_offsets(b, group, topic, parts)
    out = consumer_groups(b, "--describe", "--group", group)
    rows = {int(r["PARTITION"]): r for r in table(out, "GROUP") if r.get("TOPIC") == topic}
    assert set(rows) == set(range(parts)), f"--describe rows for partitions {sorted(rows)}:\n{out}"
    for p, r in rows.items():
        assert (int(r["CURRENT-OFFSET"]), int(r["LOG-END-OFFSET"]), int(r["LAG"])) == (
            committed[p], ends[p], ends[p] - committed[p]), f"partition {p} in --describe:\n{out}"
    assert sum(int(r["LAG"]) for r in rows.values()) == 150, f"total lag != 150:\n{out}"

    out = consumer_groups(b, "--reset-offsets", "--to-earliest", "--execute", "--group", group, "--topic", topic)
    rows = [r for r in table(out, "GROUP") if r.get("TOPIC") == topic]
    assert len(rows) == parts and all(r["NEW-OFFSET"] == "0" for r in rows), f"--reset-offsets:\n{out}"
    assert committed_offsets(b, group, topic, parts) == {p: 0 for p in range(parts)}

    m2 = members("confluent", b, topic, group, "cgtool-m2")
    wait_until(lambda: m2.count() >= 450 and m2.fully_committed(), "a new member re-reading all 450 records",
               lambda: describe_all([m2]), progress=lambda: group_progress([m2]))
    m2.terminate()
    check_exactly_once([m2], b, topic, parts)
    out = consumer_groups(b, "--describe", "--group", group)
    rows = [r for r in table(out, "GROUP") if r.get("TOPIC") == topic]
    assert rows and all(r["LAG"] == "0" for r in rows), f"lag after re-reading everything:\n{out}"


# ---------------------------------------------------------------------------------------------
# error codes over raw sockets (the same codes Apache Kafka 4.3 returns)
# ---------------------------------------------------------------------------------------------
def test_group_error_codes(broker):
    b = broker
    create_topic(b.bootstrap, "ec", 2)
    g = "ec-group"
    assignment = w.consumer_protocol_assignment({"ec": [0, 1]})
    proto = [("range", w.consumer_protocol_metadata(["ec"]))]
    with w.Conn(b.host, b.port, timeout=60) as c1, w.Conn(b.host, b.port, timeout=60) as c2:
        # a broker may answer COORDINATOR_NOT_AVAILABLE while it sets up __consumer_offsets (Kafka does)
        fc = []
        wait_until(lambda: fc.append(w.find_coordinator_v1(c1, g)) or fc[-1][0] != w.COORDINATOR_NOT_AVAILABLE,
                   "FindCoordinator without COORDINATOR_NOT_AVAILABLE", lambda: f"answers: {fc[-3:]}", timeout=60)
        err, node, host, port = fc[-1]
        assert (err, port) == (0, b.port), f"FindCoordinator: error {err}, coordinator {node} {host}:{port}"

        # JoinGroup v4+ without a member id: MEMBER_ID_REQUIRED, with the id to use
        # ... and COORDINATOR_LOAD_IN_PROGRESS while the offsets partition loads: retried, as clients do
        js = []
        wait_until(lambda: js.append(w.join_group_v5(c1, g, "", protocols=proto)) or js[-1].error not in (
            w.COORDINATOR_LOAD_IN_PROGRESS, w.COORDINATOR_NOT_AVAILABLE, w.NOT_COORDINATOR),
            "JoinGroup past coordinator loading",
            lambda: f"answers: {js[-3:]}", timeout=60)
        j = js[-1]
        assert j.error == w.MEMBER_ID_REQUIRED and j.member_id, f"first JoinGroup: {j}"
        a = j.member_id
        j = w.join_group_v5(c1, g, a, protocols=proto)
        assert j.error == 0 and j.leader == a and j.member_id == a and j.protocol == "range", f"JoinGroup: {j}"
        assert [m[0] for m in j.members] == [a], f"leader's member list: {j.members}"
        gen1 = j.generation
        err, got = w.sync_group_v3(c1, g, gen1, a, [(a, assignment)])
        assert (err, got) == (0, assignment), f"SyncGroup: error {err}, assignment {got!r}"
        assert w.heartbeat_v3(c1, g, gen1, a) == 0

        # unknown member id
        assert w.heartbeat_v3(c1, g, gen1, "no-such-member") == w.UNKNOWN_MEMBER_ID
        res = w.offset_commit_v7(c1, g, {"ec": {0: 1}}, gen1, "no-such-member")
        assert res == {("ec", 0): w.UNKNOWN_MEMBER_ID}, f"OffsetCommit by an unknown member: {res}"
        # commit to a missing topic / partition, next to a good one
        res = w.offset_commit_v7(c1, g, {"ec": {0: 5, 7: 1}, "no-such-topic": {0: 1}}, gen1, a)
        assert res == {("ec", 0): 0, ("ec", 7): w.UNKNOWN_TOPIC_OR_PARTITION,
                       ("no-such-topic", 0): w.UNKNOWN_TOPIC_OR_PARTITION}, f"OffsetCommit: {res}"

        # a second member joins: the first one's heartbeat says REBALANCE_IN_PROGRESS
        j = w.join_group_v5(c2, g, "", protocols=proto)
        assert j.error == w.MEMBER_ID_REQUIRED and j.member_id and j.member_id != a, f"second JoinGroup: {j}"
        bm = j.member_id
        corr = c2.send_request(w.JOIN_GROUP, 5, w.join_group_v5_body(g, bm, protocols=proto))  # parked
        codes = []
        wait_until(lambda: codes.append(w.heartbeat_v3(c1, g, gen1, a)) or codes[-1] == w.REBALANCE_IN_PROGRESS,
                   "heartbeat answering REBALANCE_IN_PROGRESS", lambda: f"heartbeat codes: {codes}", timeout=30,
                   every=0.1)
        assert set(codes) <= {0, w.REBALANCE_IN_PROGRESS}, f"heartbeat codes while the rebalance starts: {codes}"
        ja = w.join_group_v5(c1, g, a, protocols=proto)
        jb = w.parse_join_group_v5(c2.recv_response(corr))
        assert ja.error == 0 and jb.error == 0, f"rejoin: {ja} / {jb}"
        assert ja.generation == jb.generation and ja.generation > gen1, f"generations {gen1} -> {ja} / {jb}"
        assert ja.leader == jb.leader and ja.leader in (a, bm), f"leader: {ja} / {jb}"
        gen2 = ja.generation
        leader_conn, leader, follower_conn, follower = (c1, a, c2, bm) if ja.leader == a else (c2, bm, c1, a)
        lj = ja if ja.leader == a else jb
        assert sorted(m[0] for m in lj.members) == sorted([a, bm]), f"leader's member list: {lj.members}"
        split = {a: w.consumer_protocol_assignment({"ec": [0]}), bm: w.consumer_protocol_assignment({"ec": [1]})}
        fcorr = follower_conn.send_request(w.SYNC_GROUP, 3, w.sync_group_v3_body(g, gen2, follower))
        err, got = w.sync_group_v3(leader_conn, g, gen2, leader, list(split.items()))
        assert (err, got) == (0, split[leader]), f"leader SyncGroup: {err} {got!r}"
        err, got = w.parse_sync_group_v3(follower_conn.recv_response(fcorr))
        assert (err, got) == (0, split[follower]), f"follower SyncGroup: {err} {got!r}"

        # stale generation
        assert w.heartbeat_v3(c1, g, gen1, a) == w.ILLEGAL_GENERATION
        res = w.offset_commit_v7(c1, g, {"ec": {0: 6}}, gen1, a)
        assert res == {("ec", 0): w.ILLEGAL_GENERATION}, f"OffsetCommit with a stale generation: {res}"
        assert w.heartbeat_v3(c1, g, gen2, a) == 0 and w.heartbeat_v3(c2, g, gen2, bm) == 0
        res = w.offset_commit_v7(c1, g, {"ec": {0: 6}}, gen2, a)
        assert res == {("ec", 0): 0}, f"OffsetCommit with the current generation: {res}"
        err, offs = w.offset_fetch_v5(c1, g, {"ec": [0, 1]})
        assert err == 0 and offs == {("ec", 0): (6, 0), ("ec", 1): (-1, 0)}, f"OffsetFetch: {err} {offs}"

        # LeaveGroup (batched members), then the member is unknown
        err, res = w.leave_group_v3(c1, g, [a, bm])
        assert err == 0 and sorted(res) == sorted([(a, 0), (bm, 0)]), f"LeaveGroup: {err} {res}"
        assert w.heartbeat_v3(c1, g, gen2, a) == w.UNKNOWN_MEMBER_ID

        # simple (group-less) commits: generation -1 and no member id
        res = w.offset_commit_v7(c1, "ec-standalone", {"ec": {1: 3}, "no-such-topic": {0: 1}})
        assert res == {("ec", 1): 0, ("no-such-topic", 0): w.UNKNOWN_TOPIC_OR_PARTITION}, f"simple commit: {res}"
        err, offs = w.offset_fetch_v5(c1, "ec-standalone", {"ec": [1]})
        assert err == 0 and offs == {("ec", 1): (3, 0)}, f"OffsetFetch after a simple commit: {err} {offs}"
