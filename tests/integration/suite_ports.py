"""Loopback ports for the brokers the suite starts, never the same one twice, also when
pytest-xdist runs the suite in several worker processes at once.

Ports come from below the kernel's ephemeral range (net.ipv4.ip_local_port_range, 32768-60999
by default), so no client's outgoing connection takes a port between `free_port()` and the
broker's bind. Each xdist worker draws from a slice of its own (PYTEST_XDIST_WORKER gwN of
PYTEST_XDIST_WORKER_COUNT), so two workers never hand out the same port; inside its slice a
process starts at a random place, so two suites run side by side (two developers' worktrees on
one machine) seldom meet, and a port is only handed out while nothing is bound to it.
"""

from __future__ import annotations

import os
import random
import socket

LOWEST = 10000
_handed_out: set[int] = set()
_next: int | None = None


def _ephemeral_low() -> int:
    try:
        return int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def worker_slice() -> tuple[int, int]:
    """[low, high) of the ports this process hands out."""
    high = min(_ephemeral_low(), 65536)
    count = max(1, int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")))
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")  # a replaced worker gets gwN, N >= count
    index = int(worker[2:]) % count if worker[2:].isdigit() else 0
    size = (high - LOWEST) // count
    assert size >= 1000, f"too few ports below the ephemeral range ({LOWEST}..{high}) for {count} workers"
    return LOWEST + index * size, LOWEST + (index + 1) * size


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))  # no SO_REUSEADDR: a port in TIME_WAIT is not free either
        except OSError:
            return False
    return True


def free_ports(span: int = 1) -> int:
    """The first of `span` consecutive ports of this process's slice, each free now and never
    handed out before in this run (a `span` of them are reserved together)."""
    global _next
    low, high = worker_slice()
    if _next is None:
        _next = random.randrange(low, high)
    for _ in range(high - low):
        first = _next
        _next = _next + span if _next + span < high else low
        ports = range(first, first + span)
        if first + span > high or any(p in _handed_out for p in ports):
            continue
        if all(_bindable(p) for p in ports):
            _handed_out.update(ports)
            return first
    raise AssertionError(f"no {span} free consecutive ports left in {low}..{high}")
