"""Fixtures that run the real Spate broker (target/release/spate) for the integration suite.

Each test gets fresh brokers on free ports with data dirs under target/it/ (a real filesystem:
the broker writes with O_DIRECT, which tmpfs refuses). Every process started here is stopped at
teardown, whatever happens in the test.

The suite as evidence (tests/README.md):
- every `Broker` made during a test (also by a test that starts nodes itself) is that test's:
  the autouse fixture `test_owns_its_processes` stops it when the test ends, then fails the
  test if any `spate` or `java` process the suite started is still alive (pytest is made a
  child subreaper, so orphans of the suite stay its descendants and are found; processes the
  suite did not start are never looked at);
- every skip is printed with its reason; with `--skip-allowlist FILE` (ci/test) a skip that
  no entry of FILE allows fails the session;
- `@pytest.mark.spate_only("why")` marks a test of something only Spate has (its CLI, data
  dir, log lines, metrics): skipped when SPATE_BIN is tests/reference/kafka-as-spate (the
  reference run against Apache Kafka), run otherwise;
- `@pytest.mark.differs_from_kafka("why")` marks a test of a behaviour Spate keeps although
  Kafka 4.3.1 does otherwise (README.md says why): a strict xfail in the reference run.
"""

from __future__ import annotations

import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT / "tests" / "clients" / "python"))

import suite_ports as ports  # noqa: E402
import suite_processes as procs  # noqa: E402
import suite_skips as skips  # noqa: E402

SPATE_BIN = Path(os.environ.get("SPATE_BIN", ROOT / "target" / "release" / "spate"))
IT_DIR = Path(os.environ.get("SPATE_IT_DIR", ROOT / "target" / "it"))
CORES = int(os.environ.get("SPATE_IT_CORES", "2"))
STOP_TIMEOUT_S = 30.0
# The reference run: the suite against Apache Kafka behind Spate's CLI (tests/reference).
REFERENCE = SPATE_BIN.name == "kafka-as-spate"
# A JVM start (and a storage format) on two loaded cores takes longer than spate's start.
READY_TIMEOUT_S = float(os.environ.get("SPATE_IT_READY_TIMEOUT", "180" if REFERENCE else "60"))

_ALL_BROKERS: list["Broker"] = []


def free_port() -> int:
    """A loopback port free now and never handed out before in this run, by any xdist worker
    (suite_ports.py): ports asked for together (a quorum's voters) never collide."""
    return ports.free_ports()


def _raise_memlock():
    # glommio locks memory for its io_uring rings; as root we can lift the limit for the child.
    try:
        resource.setrlimit(resource.RLIMIT_MEMLOCK, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
    except (ValueError, OSError):
        try:  # without CAP_SYS_RESOURCE: at least the hard limit
            _, hard = resource.getrlimit(resource.RLIMIT_MEMLOCK)
            resource.setrlimit(resource.RLIMIT_MEMLOCK, (hard, hard))
        except (ValueError, OSError):
            pass
    os.setpgrp()  # own process group: never signalled together with pytest


class Broker:
    """One spate process; can be stopped, killed and restarted on the same data dir and port."""

    def __init__(self, name: str, settings: dict | None = None, cores: int = CORES, extra_args=()):
        self.name = name
        self.settings = dict(settings or {})
        self.extra_args = list(extra_args)
        self.cores = cores
        self.data_dir = IT_DIR / f"{name}-{uuid.uuid4().hex[:8]}"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = IT_DIR / f"{self.data_dir.name}.log"
        self.port = free_port()
        self.admin_port = free_port()
        self.proc: subprocess.Popen | None = None
        self._reader: threading.Thread | None = None
        self._ready = threading.Event()
        self.starts = 0
        _ALL_BROKERS.append(self)

    @property
    def host(self) -> str:
        return "127.0.0.1"

    @property
    def admin_url(self) -> str:
        """The admin HTTP endpoint (/metrics, /v1/status)."""
        return f"http://127.0.0.1:{self.admin_port}"

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def argv(self) -> list[str]:
        a = [
            str(SPATE_BIN),
            "start",
            "--data-dir",
            str(self.data_dir),
            "--listen",
            self.bootstrap,
            "--cores",
            str(self.cores),
            "--admin-listen",
            f"127.0.0.1:{self.admin_port}",
        ]
        for k, v in self.settings.items():
            a += ["--set", f"{k}={v}"]
        return a + self.extra_args

    def _pump(self, proc, logf):
        for raw in proc.stdout:
            line = raw.decode("utf-8", "replace")
            logf.write(line)
            logf.flush()
            if "ready" in line:
                self._ready.set()
        logf.close()

    def start(self):
        self.spawn()
        return self.await_ready()

    def spawn(self):
        """Starts the process without waiting for it (nodes of a cluster wait for each other)."""
        if not SPATE_BIN.exists():
            pytest.fail(f"broker binary {SPATE_BIN} not found: run `cargo build --release` first")
        assert self.proc is None or self.proc.poll() is not None, "broker already running"
        self.starts += 1
        self._ready = threading.Event()
        logf = open(self.log_path, "a", encoding="utf-8")
        logf.write(f"\n===== start #{self.starts}: {' '.join(self.argv())}\n")
        logf.flush()
        env = dict(os.environ)
        env.setdefault("RUST_BACKTRACE", "1")
        self.proc = subprocess.Popen(
            self.argv(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            preexec_fn=_raise_memlock,
            env=env,
        )
        self._reader = threading.Thread(target=self._pump, args=(self.proc, logf), daemon=True)
        self._reader.start()
        return self

    def await_ready(self):
        """Waits for the 'ready' line of a spawned process, then for its port."""
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not self._ready.wait(0.05):
            if self.proc.poll() is not None:
                self._reader.join(2)
                pytest.fail(
                    f"broker exited with {self.proc.returncode} before 'ready'\n{self.log_tail()}"
                )
            if time.monotonic() > deadline:
                self.kill()
                pytest.fail(f"broker not ready after {READY_TIMEOUT_S}s\n{self.log_tail()}")
        self.wait_port()
        return self

    def wait_port(self, timeout=10.0):
        deadline = time.monotonic() + timeout
        while True:
            try:
                with socket.create_connection((self.host, self.port), timeout=1):
                    return
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, sig=signal.SIGTERM, timeout=STOP_TIMEOUT_S) -> int:
        """Clean shutdown; returns the exit code (kills with SIGKILL after `timeout`)."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
                if self._reader:
                    self._reader.join(2)
                raise AssertionError(f"broker did not exit {timeout}s after {sig!r}\n{self.log_tail()}")
        if self._reader:
            self._reader.join(5)
        return self.proc.returncode

    def kill(self):
        """Crash: SIGKILL, no chance to flush anything."""
        if self.proc is None:
            return
        try:
            # the broker's own process group: it and anything it started, even if it already exited
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        if self._reader:
            self._reader.join(5)

    def restart(self):
        return self.start()

    def pause(self):
        """SIGSTOP to the broker's process group (the JVM too, behind the reference wrapper)."""
        os.killpg(self.proc.pid, signal.SIGSTOP)

    def resume(self):
        os.killpg(self.proc.pid, signal.SIGCONT)

    def wait_for_log(self, text, timeout=10.0) -> str:
        """The broker's log once it holds `text`. The log reaches its file through a reader
        thread (`_pump`), so a line the broker wrote before answering a request can land
        there after the answer: a test checks its lines through this, never the file alone."""
        deadline = time.monotonic() + timeout
        while True:
            log = self.log_path.read_text(encoding="utf-8", errors="replace")
            if text in log:
                return log
            assert time.monotonic() < deadline, f"{text!r} never logged\n{self.log_tail()}"
            time.sleep(0.05)

    def log_tail(self, n=60) -> str:
        try:
            lines = self.log_path.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            return "(no broker log)"
        return f"--- {self.log_path} (last {n} lines) ---\n" + "\n".join(lines[-n:])

    def cleanup(self, keep: bool):
        self.kill()
        if not keep:
            shutil.rmtree(self.data_dir, ignore_errors=True)


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)


@pytest.fixture
def broker_factory(request):
    """start(settings=None, name=None, cores=CORES, extra_args=()) -> a running Broker; all are torn
    down after the test. `extra_args` go after the flags conftest sets (e.g. --config FILE)."""
    made: list[Broker] = []

    def start(settings: dict | None = None, name: str | None = None, cores: int = CORES, extra_args=()) -> Broker:
        safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in request.node.name)[:60]
        b = Broker(name or safe, settings, cores, extra_args)
        made.append(b)
        return b.start()

    yield start

    failed = any(getattr(request.node, f"rep_{w}", None) and getattr(request.node, f"rep_{w}").failed
                 for w in ("setup", "call"))
    keep = failed or bool(os.environ.get("SPATE_IT_KEEP"))
    for b in made:
        if failed:
            sys.stderr.write("\n" + b.log_tail() + "\n")
        b.cleanup(keep)
        if not keep:
            try:
                b.log_path.unlink()
            except OSError:
                pass


@pytest.fixture
def broker(broker_factory):
    return broker_factory()


def failed(request) -> bool:
    """Whether the test failed in setup or call (its logs and data dirs are then kept)."""
    return any(getattr(request.node, f"rep_{w}", None) and getattr(request.node, f"rep_{w}").failed
               for w in ("setup", "call"))


@pytest.fixture(autouse=True)
def test_owns_its_processes(request):
    """Every Broker made during the test is stopped when it ends (nodes a test starts itself,
    not through broker_factory, included); then no spate or java process the suite started may
    be alive: one is killed and fails the test at teardown. Runs after every other fixture's
    teardown (autouse fixtures are set up first)."""
    before = len(_ALL_BROKERS)
    yield
    keep = failed(request) or bool(os.environ.get("SPATE_IT_KEEP"))
    for b in _ALL_BROKERS[before:]:
        if b.proc is not None:
            b.cleanup(keep)
    procs.reap()
    strays = procs.wait_gone(procs.suite_processes(), timeout=10)
    if strays:
        said = procs.describe(strays)
        procs.kill(strays)
        pytest.fail(f"the test left processes running (now killed): {said}", pytrace=False)


def pytest_addoption(parser):
    parser.addoption("--skip-allowlist", default=None, metavar="FILE",
                     help="fail the session on any skip no entry of FILE allows (tests/skip-allowlist.txt)")


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "spate_only(why): checks something only Spate has (its CLI, data dir, log lines, metrics); "
        "skipped in the reference run against Apache Kafka (tests/reference/kafka-as-spate)")
    config.addinivalue_line(
        "markers",
        "differs_from_kafka(why): Spate keeps a behaviour Kafka 4.3.1 does not have (README.md says "
        "why); a strict xfail in the reference run")
    config.addinivalue_line(
        "markers",
        "solo(why): a wall-clock bound or a CPU measurement that tests running beside it would "
        "distort: ci/test runs these one at a time, after the others ran in parallel")


# The files whose tests take longest, slowest first (the durations in tests/README.md). Under
# pytest-xdist their tests are handed out first, so no worker is left running a long test alone
# at the end while the others idle; in a serial run the order changes nothing.
SLOW_FIRST = ("test_replication.py", "test_groups.py", "test_multi_node.py", "test_kafka_tools.py",
              "test_soak_smoke.py", "test_storage.py", "test_clients.py", "test_readme_claims.py")


def pytest_collection_modifyitems(config, items):
    if os.environ.get("PYTEST_XDIST_WORKER"):  # every worker sorts alike, as xdist requires
        rank = {name: i for i, name in enumerate(SLOW_FIRST)}
        items.sort(key=lambda item: rank.get(item.path.name, len(SLOW_FIRST)))
    if not REFERENCE:
        return
    for item in items:
        mark = item.get_closest_marker("spate_only")
        if mark:
            why = mark.args[0] if mark.args else "Spate only"
            item.add_marker(pytest.mark.skip(reason=f"{skips.SPATE_ONLY}{why}"))
        differs = item.get_closest_marker("differs_from_kafka")
        if differs:  # strict: once Kafka passes it, the mark (and the README's word) is stale
            item.add_marker(pytest.mark.xfail(strict=True, reason=f"differs from Kafka: {differs.args[0]}"))


def pytest_collectreport(report):
    skips.record(report)


def pytest_runtest_logreport(report):
    skips.record(report)


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    skips.summary(terminalreporter, config, REFERENCE)
    strays = getattr(config, "_spate_strays", None)
    if strays:
        terminalreporter.write_line(f"LEFTOVER PROCESSES at the end of the session (killed): {strays}",
                                    red=True)


def pytest_sessionstart(session):
    IT_DIR.mkdir(parents=True, exist_ok=True)
    procs.become_subreaper()


def pytest_sessionfinish(session, exitstatus):
    config = session.config
    for b in _ALL_BROKERS:
        b.kill()
    strays = procs.wait_gone(procs.suite_processes(), timeout=10)
    if strays:
        _add_strays(config, procs.describe(strays))
        procs.kill(strays)
    if hasattr(config, "workeroutput"):  # an xdist worker: the controller reports and decides
        config.workeroutput["spate_strays"] = getattr(config, "_spate_strays", None)
        return
    if getattr(config, "_spate_strays", None) or skips.unexpected(config, REFERENCE):
        session.exitstatus = SUITE_NOT_CLEAN


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error):
    """pytest-xdist's controller: what a worker found left running at its end is the session's."""
    said = getattr(node, "workeroutput", {}).get("spate_strays")
    if said:
        _add_strays(node.config, said)


def _add_strays(config, said: str):
    config._spate_strays = "; ".join(filter(None, [getattr(config, "_spate_strays", None), said]))


# pytest's exit status when an unexpected skip or a leftover process spoiled the session,
# whatever the tests did (ci/test tells it from test failures: 1).
SUITE_NOT_CLEAN = 7
