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
