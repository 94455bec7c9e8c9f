"""Fixtures that run the real Spate broker (target/release/spate) for the integration suite.

Each test gets fresh brokers on free ports with data dirs under target/it/ (a real filesystem:
the broker writes with O_DIRECT, which tmpfs refuses). Every process started here is stopped at
teardown, whatever happens in the test.
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

SPATE_BIN = Path(os.environ.get("SPATE_BIN", ROOT / "target" / "release" / "spate"))
IT_DIR = Path(os.environ.get("SPATE_IT_DIR", ROOT / "target" / "it"))
CORES = int(os.environ.get("SPATE_IT_CORES", "2"))
READY_TIMEOUT_S = float(os.environ.get("SPATE_IT_READY_TIMEOUT", "60"))
STOP_TIMEOUT_S = 30.0

_ALL_BROKERS: list["Broker"] = []


_HANDED_OUT_PORTS: set[int] = set()


def free_port() -> int:
    """A loopback port free now and never handed out before in this run.

    The kernel may give the same ephemeral port to two binds in a row once the first socket is
    closed, so ports asked for together (a quorum's voters) could otherwise collide.
    """
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _HANDED_OUT_PORTS:
            _HANDED_OUT_PORTS.add(port)
            return port


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


def pytest_sessionstart(session):
    IT_DIR.mkdir(parents=True, exist_ok=True)


def pytest_sessionfinish(session, exitstatus):
    for b in _ALL_BROKERS:
        b.kill()
