"""The processes the suite started, found without guessing by name.

pytest makes itself a child subreaper (prctl PR_SET_CHILD_SUBREAPER): a process the suite
started, or one of theirs, stays a descendant of pytest even once its parent exits (a killed
`kafka-as-spate` wrapper's JVM, the nodes of `spate dev-cluster`), instead of moving to init.
So "started by the suite" is "a descendant of this pytest process", and nothing else on the
machine is ever looked at or signalled. Orphans that exit become pytest's zombies: `reap`
collects those (only pids no Popen object of this process waits for).
"""

from __future__ import annotations

import ctypes
import gc
import os
import signal
import subprocess
import time
from pathlib import Path

PR_SET_CHILD_SUBREAPER = 36
# What a leak is: a broker (spate, or Kafka's JVM in the reference run) or a Java client.
WATCHED = ("spate", "java")


def become_subreaper():
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    except (OSError, AttributeError):
        pass  # not Linux: orphans go to init and only direct children are found


def _stat(pid: int):
    """(ppid, state, comm) of `pid`, or None once it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    comm = raw[raw.index("(") + 1:raw.rindex(")")]
    state, ppid = raw[raw.rindex(")") + 2:].split()[:2]
    return int(ppid), state, comm


def _descendants() -> dict[int, tuple[str, str]]:
    """{pid: (state, comm)} of every descendant of this process."""
    table = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            st = _stat(int(entry))
            if st:
                table[int(entry)] = st
    children: dict[int, list[int]] = {}
    for pid, (ppid, _, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    found, todo = {}, list(children.get(os.getpid(), []))
    while todo:
        pid = todo.pop()
        found[pid] = table[pid][1:]
        todo.extend(children.get(pid, []))
    return found


def reap():
    """Collects the zombies of orphans reparented to pytest; a child some Popen object still
    waits for is left to it (its exit code is the test's to read)."""
    waited = {o.pid for o in gc.get_objects() if isinstance(o, subprocess.Popen) and o.returncode is None}
    for pid, (state, _) in _descendants().items():
        st = _stat(pid)
        if state == "Z" and st and st[0] == os.getpid() and pid not in waited:
            try:
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass


def suite_processes() -> dict[int, str]:
    """{pid: comm} of the live spate/java processes the suite started."""
    return {pid: comm for pid, (state, comm) in _descendants().items()
            if state != "Z" and comm in WATCHED}


def wait_gone(pids: dict[int, str], timeout: float) -> dict[int, str]:
    """Those of `pids` still alive (not zombies) after up to `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while pids:
        alive = {}
        for pid, comm in pids.items():
            st = _stat(pid)
            if st and st[1] != "Z":
                alive[pid] = comm
        pids = alive
        if not pids or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    return pids


def describe(pids: dict[int, str]) -> str:
    out = []
    for pid, comm in sorted(pids.items()):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            cmd = comm
        out.append(f"{pid} {cmd[:200]}")
    return "; ".join(out)


def kill(pids: dict[int, str]):
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    wait_gone(pids, timeout=10)
