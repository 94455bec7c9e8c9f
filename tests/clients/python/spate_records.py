"""The deterministic record set every Spate test client produces (and the tests verify).

Each client (Python, Java, Go, Node) implements exactly the same functions; keep them in sync.
"""

BASE_TS = 1700000000000
FILLER = "0123456789abcdefghijklmnopqrstuvwxyz"


def key(client: str, i: int) -> str:
    return f"{client}-k{i % 500}"


def value(client: str, i: int) -> str:
    prefix = f"{client}-v{i}-"
    target = 100 + i % 101
    need = max(0, target - len(prefix))
    reps = need // len(FILLER) + 1
    return prefix + (FILLER * reps)[:need]


def headers(client: str, i: int):
    return [("i", str(i)), ("client", client)]


def timestamp(i: int) -> int:
    return BASE_TS + i


def expected(client: str, i: int) -> dict:
    """The record as the consume command prints it (without partition/offset)."""
    return {
        "key": key(client, i),
        "value": value(client, i),
        "headers": [list(h) for h in headers(client, i)],
        "timestamp": timestamp(i),
    }


def parse_common(argv, prog):
    """Shared CLI for the Python clients (same flags as the Java/Go/Node clients)."""
    import argparse

    ap = argparse.ArgumentParser(prog=prog)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("produce", help="produce the deterministic record set")
    p.add_argument("--bootstrap", required=True)
    p.add_argument("--topic", required=True)
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--acks", default="all", choices=["all", "1", "-1", "0"])
    p.add_argument("--codec", default="none", choices=["gzip", "snappy", "lz4", "zstd", "none"])
    p.add_argument("--client", default=prog)
    c = sub.add_parser("consume", help="assign-style consume from offset 0, print JSON lines")
    c.add_argument("--bootstrap", required=True)
    c.add_argument("--topic", required=True)
    c.add_argument("--partitions", type=int, required=True)
    c.add_argument("--expect", type=int, required=True)
    c.add_argument("--timeout-s", type=float, default=60.0)
    g = sub.add_parser("group-consume", help="consume as a member of a consumer group, print JSON lines")
    g.add_argument("--bootstrap", required=True)
    g.add_argument("--topic", required=True)
    g.add_argument("--group", required=True)
    g.add_argument("--member-name", required=True)
    g.add_argument("--assignor", default="range", choices=["range", "roundrobin", "cooperative-sticky"])
    g.add_argument("--commit", default="sync", choices=["sync", "auto"])
    g.add_argument("--max-records", type=int, default=0)
    g.add_argument("--idle-exit-s", type=float, default=0.0)
    g.add_argument("--session-timeout-ms", type=int, default=6000)
    g.add_argument("--timeout-s", type=float, default=600.0)
    return ap.parse_args(argv)


def emit(out, partition, offset, key_b, value_b, hdrs, ts):
    import json

    def s(b):
        if b is None:
            return None
        return b.decode("utf-8") if isinstance(b, (bytes, bytearray)) else str(b)

    out.write(
        json.dumps(
            {
                "partition": partition,
                "offset": offset,
                "key": s(key_b),
                "value": s(value_b),
                "headers": [[k if isinstance(k, str) else s(k), s(v)] for k, v in (hdrs or [])],
                "timestamp": ts,
            },
            separators=(",", ":"),
        )
        + "\n"
    )


class GroupOut:
    """JSON lines of the group-consume command, one flushed line per event (tests read them live).

    {"event":"assigned"|"revoked"|"lost","member":M,"partitions":[...],"owned":[...]}
    {"event":"record","member":M,"partition":P,"offset":O,"key":...,"value":...,"headers":...,"timestamp":T}
    {"event":"committed","member":M,"offsets":{"P":next_offset,...}}
    {"event":"commit_failed","member":M,"error":"..."}
    {"event":"exit","member":M,"reason":"signal"|"idle"|"max-records"|"timeout","consumed":N}
    """

    def __init__(self, member, out=None):
        import sys

        self.member = member
        self.out = out or sys.stdout
        self.owned = set()

    def line(self, obj):
        import json

        self.out.write(json.dumps(obj, separators=(",", ":")) + "\n")
        self.out.flush()

    def event(self, name, **kw):
        self.line({"event": name, "member": self.member, **kw})

    def assigned(self, parts):
        parts = sorted(set(parts))
        self.owned |= set(parts)
        self.event("assigned", partitions=parts, owned=sorted(self.owned))

    def revoked(self, parts, kind="revoked"):
        parts = sorted(set(parts))
        self.owned -= set(parts)
        self.event(kind, partitions=parts, owned=sorted(self.owned))

    def record(self, partition, offset, key_b, value_b, hdrs, ts):
        import io

        buf = io.StringIO()
        emit(buf, partition, offset, key_b, value_b, hdrs, ts)
        import json

        rec = json.loads(buf.getvalue())
        self.line({"event": "record", "member": self.member, **rec})

    def committed(self, offsets):
        self.event("committed", offsets={str(p): o for p, o in sorted(offsets.items())})


class StopFlag:
    """Set by SIGTERM/SIGINT; the consume loop checks it and then commits, leaves and exits 0."""

    def __init__(self):
        import signal

        self.stop = False
        signal.signal(signal.SIGTERM, self._set)
        signal.signal(signal.SIGINT, self._set)

    def _set(self, *_):
        self.stop = True


def run_group_loop(a, out, stop, poll, commit, pending):
    """The group-consume loop both Python clients share: poll, print, commit, stop when told.

    `poll(limit)` returns an iterable of (partition, offset, key, value, headers, timestamp);
    `commit()` commits `pending` (partition -> next offset). Returns (consumed, exit reason).
    """
    import time

    got = 0
    start = time.monotonic()
    last = start
    reason = "timeout"
    try:
        while True:
            now = time.monotonic()
            if stop.stop:
                reason = "signal"
                break
            if a.max_records and got >= a.max_records:
                reason = "max-records"
                break
            if a.idle_exit_s and now - last > a.idle_exit_s:
                reason = "idle"
                break
            if now - start > a.timeout_s:
                break
            limit = 500 if not a.max_records else max(1, min(500, a.max_records - got))
            for partition, offset, key_b, value_b, hdrs, ts in poll(limit):
                out.record(partition, offset, key_b, value_b, hdrs, ts)
                pending[partition] = offset + 1
                got += 1
                last = time.monotonic()
            commit()
    finally:
        commit()
        out.event("exit", reason=reason, consumed=got)
    return got, reason
