"""Hand-rolled Kafka wire protocol for tests that must control every byte.

Mostly non-flexible request versions (request header v1, response header v0); ApiVersions with an
unsupported version is sent the way a newer client would (header v2), and the flexible versions
(compact strings and arrays, tagged fields; request header v2, response header v1) are spoken for
Produce v12, Fetch v16 and DescribeTopicPartitions v0, to read KIP-951's tagged leader hints.
Everything is big-endian; record batches are magic v2 with varint records and a CRC32C over the
bytes from `attributes` to the end of the batch.
"""

from __future__ import annotations

import socket
import struct
import time
from dataclasses import dataclass, field

import crc32c as _crc32c

# API keys
PRODUCE, FETCH, LIST_OFFSETS, METADATA = 0, 1, 2, 3
API_VERSIONS, CREATE_TOPICS, INIT_PRODUCER_ID = 18, 19, 22
OFFSET_COMMIT, OFFSET_FETCH, FIND_COORDINATOR = 8, 9, 10
JOIN_GROUP, HEARTBEAT, LEAVE_GROUP, SYNC_GROUP = 11, 12, 13, 14
OFFSET_FOR_LEADER_EPOCH = 23
DESCRIBE_TOPIC_PARTITIONS = 75
DELETE_TOPICS = 20

# error codes
NONE = 0
CORRUPT_MESSAGE = 2
UNKNOWN_TOPIC_OR_PARTITION = 3
LEADER_NOT_AVAILABLE = 5
COORDINATOR_LOAD_IN_PROGRESS = 14
COORDINATOR_NOT_AVAILABLE = 15
NOT_COORDINATOR = 16
ILLEGAL_GENERATION = 22
INVALID_TIMESTAMP = 32
UNKNOWN_MEMBER_ID = 25
REBALANCE_IN_PROGRESS = 27
MEMBER_ID_REQUIRED = 79
UNSUPPORTED_VERSION = 35
NOT_LEADER_OR_FOLLOWER = 6
REQUEST_TIMED_OUT = 7
NOT_ENOUGH_REPLICAS = 19
NOT_ENOUGH_REPLICAS_AFTER_APPEND = 20
FENCED_LEADER_EPOCH = 74
UNKNOWN_LEADER_EPOCH = 75
OUT_OF_ORDER_SEQUENCE_NUMBER = 45
DUPLICATE_SEQUENCE_NUMBER = 46
INVALID_RECORD = 87
INVALID_REQUEST = 42
INVALID_TOPIC_EXCEPTION = 17
UNKNOWN_TOPIC_ID = 100


def crc32c(data: bytes) -> int:
    return _crc32c.crc32c(data)


# ---------------------------------------------------------------------------------------------
# primitive encoders
# ---------------------------------------------------------------------------------------------
def i8(v):
    return struct.pack(">b", v)


def i16(v):
    return struct.pack(">h", v)


def i32(v):
    return struct.pack(">i", v)


def i64(v):
    return struct.pack(">q", v)


def string(s):
    if s is None:
        return i16(-1)
    b = s.encode() if isinstance(s, str) else s
    return i16(len(b)) + b


def bytes_(b):
    if b is None:
        return i32(-1)
    return i32(len(b)) + b


def array(items):
    items = list(items)
    return i32(len(items)) + b"".join(items)


def uvarint(v: int) -> bytes:
    out = bytearray()
    while True:
        byte = v & 0x7F
        v >>= 7
        if v:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def varint(v: int) -> bytes:
    """Signed zigzag varint (varlong when v is large)."""
    return uvarint((v << 1) ^ (v >> 63))


def vbytes(b):
    if b is None:
        return varint(-1)
    return varint(len(b)) + b


# ---------------------------------------------------------------------------------------------
# decoding
# ---------------------------------------------------------------------------------------------
class Reader:
    def __init__(self, data: bytes):
        self.d = data
        self.o = 0

    def take(self, n):
        if self.o + n > len(self.d):
            raise ValueError(f"short read: need {n} at {self.o}, have {len(self.d) - self.o}")
        b = self.d[self.o : self.o + n]
        self.o += n
        return b

    def i8(self):
        return struct.unpack(">b", self.take(1))[0]

    def i16(self):
        return struct.unpack(">h", self.take(2))[0]

    def i32(self):
        return struct.unpack(">i", self.take(4))[0]

    def u32(self):
        return struct.unpack(">I", self.take(4))[0]

    def i64(self):
        return struct.unpack(">q", self.take(8))[0]

    def string(self):
        n = self.i16()
        return None if n < 0 else self.take(n).decode()

    def bytes_(self):
        n = self.i32()
        return None if n < 0 else self.take(n)

    def array(self, fn):
        n = self.i32()
        return None if n < 0 else [fn(self) for _ in range(n)]

    def uvarint(self):
        shift = result = 0
        while True:
            b = self.take(1)[0]
            result |= (b & 0x7F) << shift
            if not b & 0x80:
                return result
            shift += 7

    def varint(self):
        v = self.uvarint()
        return (v >> 1) ^ -(v & 1)

    def vbytes(self):
        n = self.varint()
        return None if n < 0 else self.take(n)

    def remaining(self):
        return len(self.d) - self.o

    # ---- flexible versions
    def compact_string(self):
        n = self.uvarint() - 1
        return None if n < 0 else self.take(n).decode()

    def compact_bytes(self):
        n = self.uvarint() - 1
        return None if n < 0 else self.take(n)

    def compact_array(self, fn):
        n = self.uvarint() - 1
        return None if n < 0 else [fn(self) for _ in range(n)]

    def uuid(self):
        return self.take(16)

    def tagged_fields(self) -> dict:
        """{tag: raw bytes} of a tagged-field section."""
        return {self.uvarint(): self.take(self.uvarint()) for _ in range(self.uvarint())}


# ---------------------------------------------------------------------------------------------
# record batches (magic v2)
# ---------------------------------------------------------------------------------------------
@dataclass
class Rec:
    key: bytes | None
    value: bytes | None
    headers: list = field(default_factory=list)  # [(str, bytes)]
    timestamp_delta: int = 0


def encode_record(offset_delta: int, r: Rec) -> bytes:
    body = (
        i8(0)
        + varint(r.timestamp_delta)
        + varint(offset_delta)
        + vbytes(r.key)
        + vbytes(r.value)
        + varint(len(r.headers))
        + b"".join(vbytes(k.encode()) + vbytes(v) for k, v in r.headers)
    )
    return varint(len(body)) + body


def record_batch(
    records,
    *,
    base_offset=0,
    base_timestamp=1700000000000,
    producer_id=-1,
    producer_epoch=-1,
    base_sequence=-1,
    attributes=0,
    magic=2,
    count=None,
    corrupt_crc=False,
    partition_leader_epoch=-1,
) -> bytes:
    records = list(records)
    recs = b"".join(encode_record(i, r) for i, r in enumerate(records))
    last_delta = max(len(records) - 1, 0)
    max_ts = base_timestamp + max((r.timestamp_delta for r in records), default=0)
    after_crc = (
        i16(attributes)
        + i32(last_delta)
        + i64(base_timestamp)
        + i64(max_ts)
        + i64(producer_id)
        + i16(producer_epoch)
        + i32(base_sequence)
        + i32(len(records) if count is None else count)
        + recs
    )
    crc = crc32c(after_crc)
    if corrupt_crc:
        crc ^= 0x5A5A5A5A
    body = i32(partition_leader_epoch) + i8(magic) + struct.pack(">I", crc) + after_crc
    return i64(base_offset) + i32(len(body)) + body


@dataclass
class Batch:
    base_offset: int
    magic: int
    crc: int
    attributes: int
    last_offset_delta: int
    base_timestamp: int
    producer_id: int
    producer_epoch: int
    base_sequence: int
    records: list  # [(offset, key, value, headers, timestamp)]
    crc_ok: bool


def decode_batches(data: bytes) -> list[Batch]:
    """Decode uncompressed v2 batches (as returned by Fetch). Stops at a partial trailing batch."""
    out = []
    r = Reader(data or b"")
    while r.remaining() >= 12:
        start = r.o
        base_offset = r.i64()
        length = r.i32()
        if r.remaining() < length:
            break
        body = Reader(r.take(length))
        body.i32()  # partition leader epoch
        magic = body.i8()
        crc = body.u32()
        crc_ok = crc32c(body.d[body.o :]) == crc
        attributes = body.i16()
        last_delta = body.i32()
        base_ts = body.i64()
        body.i64()  # max ts
        pid = body.i64()
        epoch = body.i16()
        seq = body.i32()
        n = body.i32()
        recs = []
        if attributes & 0x07:
            raise ValueError(f"compressed batch at {start} (attributes {attributes:#x}); tests fetch raw only")
        for _ in range(n):
            rl = body.varint()
            rec = Reader(body.take(rl))
            rec.i8()
            ts_delta = rec.varint()
            off_delta = rec.varint()
            k = rec.vbytes()
            v = rec.vbytes()
            hs = []
            for _ in range(rec.varint()):
                hk = rec.vbytes()
                hv = rec.vbytes()
                hs.append((hk.decode() if hk is not None else None, hv))
            recs.append((base_offset + off_delta, k, v, hs, base_ts + ts_delta))
        out.append(Batch(base_offset, magic, crc, attributes, last_delta, base_ts, pid, epoch, seq, recs, crc_ok))
    return out


# ---------------------------------------------------------------------------------------------
# connection
# ---------------------------------------------------------------------------------------------
class Closed(Exception):
    pass


def request_header(api_key, api_version, correlation_id, client_id="spate-it", flexible=False):
    h = i16(api_key) + i16(api_version) + i32(correlation_id) + string(client_id)
    if flexible:
        h += b"\x00"  # empty tagged fields
    return h


class Conn:
    def __init__(self, host, port, timeout=10.0, source=None):
        """`source`: the local address to connect from (e.g. another loopback address)."""
        self.sock = socket.create_connection(
            (host, port), timeout=timeout, source_address=(source, 0) if source else None
        )
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.corr = 0

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def send_raw(self, data: bytes):
        self.sock.sendall(data)

    def send_frame(self, payload: bytes):
        self.send_raw(i32(len(payload)) + payload)

    def _recv_exact(self, n):
        buf = bytearray()
        while len(buf) < n:
            try:
                chunk = self.sock.recv(n - len(buf))
            except (ConnectionResetError, BrokenPipeError) as e:
                raise Closed(str(e)) from e
            if not chunk:
                raise Closed(f"EOF after {len(buf)} of {n} bytes")
            buf += chunk
        return bytes(buf)

    def recv_frame(self) -> bytes:
        (n,) = struct.unpack(">i", self._recv_exact(4))
        return self._recv_exact(n)

    def request(self, api_key, api_version, body: bytes, flexible=False) -> Reader:
        return self.recv_response(self.send_request(api_key, api_version, body, flexible))

    def send_request(self, api_key, api_version, body: bytes, flexible=False) -> int:
        """Sends without waiting (for requests the broker parks, like JoinGroup); returns the correlation id."""
        self.corr += 1
        self.send_frame(request_header(api_key, api_version, self.corr, flexible=flexible) + body)
        return self.corr

    def recv_response(self, corr: int) -> Reader:
        r = Reader(self.recv_frame())
        got = r.i32()
        if got != corr:
            raise AssertionError(f"correlation id {got} != {corr}")
        return r

    def expect_closed(self, timeout=10.0) -> bytes:
        """Wait until the peer closes; returns any bytes it sent first (normally none).

        Raises AssertionError if the connection is still open after `timeout` seconds."""
        got = bytearray()
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"connection still open after {timeout}s (received {bytes(got[:64])!r})")
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                continue
            except (ConnectionResetError, BrokenPipeError):
                return bytes(got)
            if not chunk:
                return bytes(got)
            got += chunk


# ---------------------------------------------------------------------------------------------
# requests
# ---------------------------------------------------------------------------------------------
def api_versions(conn: Conn, version=0):
    """Returns (error_code, {api_key: (min, max)})."""
    r = conn.request(API_VERSIONS, version, b"")
    return parse_api_versions_v0(r)


def parse_api_versions_v0(r: Reader):
    err = r.i16()
    ranges = {}
    for k, lo, hi in r.array(lambda x: (x.i16(), x.i16(), x.i16())):
        ranges[k] = (lo, hi)
    return err, ranges


def metadata_v1(conn: Conn, topics=None):
    """Metadata v1. topics=None asks for all topics. Returns {topic: (err, {partition: (err, leader)})}."""
    body = i32(-1) if topics is None else array(string(t) for t in topics)
    r = conn.request(METADATA, 1, body)
    brokers = r.array(lambda x: (x.i32(), x.string(), x.i32(), x.string()))
    r.i32()  # controller id
    out = {}
    for _ in range(r.i32()):
        terr = r.i16()
        name = r.string()
        r.i8()  # is_internal
        parts = {}
        for _ in range(r.i32()):
            perr = r.i16()
            pidx = r.i32()
            leader = r.i32()
            r.array(lambda x: x.i32())
            r.array(lambda x: x.i32())
            parts[pidx] = (perr, leader)
        out[name] = (terr, parts)
    return brokers, out


@dataclass
class PartitionMeta:
    error: int
    leader: int
    leader_epoch: int
    replicas: list
    isr: list
    offline: list


def metadata_v7(conn: Conn, topics=None, allow_auto_creation=False):
    """Metadata v7 (leader epochs, replicas, ISR, offline replicas). topics=None asks for all.
    Returns (brokers [(node_id, host, port, rack)], controller_id,
    {topic: (error, {partition: PartitionMeta})})."""
    body = (i32(-1) if topics is None else array(string(t) for t in topics)) + i8(1 if allow_auto_creation else 0)
    r = conn.request(METADATA, 7, body)
    r.i32()  # throttle
    brokers = r.array(lambda x: (x.i32(), x.string(), x.i32(), x.string()))
    r.string()  # cluster id
    controller = r.i32()
    out = {}
    for _ in range(r.i32()):
        terr = r.i16()
        name = r.string()
        r.i8()  # is_internal
        parts = {}
        for _ in range(r.i32()):
            perr = r.i16()
            pidx = r.i32()
            leader = r.i32()
            epoch = r.i32()
            replicas = r.array(lambda x: x.i32())
            isr = r.array(lambda x: x.i32())
            offline = r.array(lambda x: x.i32())
            parts[pidx] = PartitionMeta(perr, leader, epoch, replicas or [], isr or [], offline or [])
        out[name] = (terr, parts)
    return brokers, controller, out


def init_producer_id_v0(conn: Conn, transactional_id=None, timeout_ms=60000):
    r = conn.request(INIT_PRODUCER_ID, 0, string(transactional_id) + i32(timeout_ms))
    r.i32()  # throttle
    err = r.i16()
    pid = r.i64()
    epoch = r.i16()
    return err, pid, epoch


def produce_v3(conn: Conn, topic, partition, batch: bytes, acks=-1, timeout_ms=30000, version=3):
    """Returns (error_code, base_offset) for the single partition."""
    corr = produce_v3_send(conn, topic, partition, batch, acks, timeout_ms, version)
    return produce_v3_recv(conn, corr, version)


def produce_v3_send(conn: Conn, topic, partition, batch: bytes, acks=-1, timeout_ms=30000, version=3) -> int:
    """Sends a Produce without waiting for its answer; returns the correlation id."""
    body = (
        string(None)
        + i16(acks)
        + i32(timeout_ms)
        + array([string(topic) + array([i32(partition) + bytes_(batch)])])
    )
    return conn.send_request(PRODUCE, version, body)


def produce_v3_recv(conn: Conn, corr: int, version=3):
    """The answer to produce_v3_send: (error_code, base_offset)."""
    r = conn.recv_response(corr)
    results = []
    for _ in range(r.i32()):
        name = r.string()
        for _ in range(r.i32()):
            idx = r.i32()
            err = r.i16()
            base = r.i64()
            r.i64()  # log append time (v2+)
            if version >= 5:
                r.i64()  # log start offset
            results.append((name, idx, err, base))
    assert len(results) == 1, results
    return results[0][2], results[0][3]


def fetch_v4(conn: Conn, topic, partition, offset=0, max_bytes=1 << 20, max_wait_ms=100, min_bytes=1):
    """Returns (error_code, high_watermark, records_bytes)."""
    return fetch_v4_recv(conn, fetch_v4_send(conn, topic, partition, offset, max_bytes, max_wait_ms, min_bytes))


def fetch_v4_send(conn: Conn, topic, partition, offset=0, max_bytes=1 << 20, max_wait_ms=100, min_bytes=1) -> int:
    """Sends a Fetch v4 of one partition without waiting; returns the correlation id."""
    body = (
        i32(-1)
        + i32(max_wait_ms)
        + i32(min_bytes)
        + i32(max_bytes)
        + i8(0)
        + array([string(topic) + array([i32(partition) + i64(offset) + i32(max_bytes)])])
    )
    return conn.send_request(FETCH, 4, body)


def fetch_v4_recv(conn: Conn, corr: int):
    """The answer to fetch_v4_send: (error_code, high_watermark, records_bytes)."""
    r = conn.recv_response(corr)
    r.i32()  # throttle
    for _ in range(r.i32()):
        r.string()
        for _ in range(r.i32()):
            r.i32()
            err = r.i16()
            hw = r.i64()
            r.i64()  # last stable offset
            r.array(lambda x: (x.i64(), x.i64()))
            recs = r.bytes_()
            return err, hw, recs
    raise AssertionError("empty fetch response")


def fetch_partitions_v4(conn: Conn, topic, offsets: dict, max_bytes, partition_max_bytes, max_wait_ms=0):
    """One Fetch v4 of several partitions of a topic ({partition: offset}, in that order):
    {partition: (error_code, high_watermark, records_bytes)}."""
    parts = b"".join(i32(p) + i64(o) + i32(partition_max_bytes) for p, o in offsets.items())
    body = (
        i32(-1)
        + i32(max_wait_ms)
        + i32(0)
        + i32(max_bytes)
        + i8(0)
        + i32(1)
        + string(topic)
        + i32(len(offsets))
        + parts
    )
    r = conn.request(FETCH, 4, body)
    r.i32()  # throttle
    out = {}
    for _ in range(r.i32()):
        r.string()
        for _ in range(r.i32()):
            p = r.i32()
            err = r.i16()
            hw = r.i64()
            r.i64()  # last stable offset
            r.array(lambda x: (x.i64(), x.i64()))
            out[p] = (err, hw, r.bytes_() or b"")
    return out


def fetch_all_v4(conn: Conn, topic, partition, max_rounds=100):
    """All records of a partition from offset 0 up to the high watermark (uncompressed batches)."""
    out = []
    offset = 0
    hw = None
    for _ in range(max_rounds):
        err, hw, data = fetch_v4(conn, topic, partition, offset)
        assert err == NONE, f"fetch {topic}/{partition}@{offset}: error {err}"
        batches = decode_batches(data)
        for b in batches:
            assert b.crc_ok, f"fetched batch at {b.base_offset} has a bad CRC"
            for rec in b.records:
                if rec[0] >= offset:
                    out.append(rec)
        if out:
            offset = out[-1][0] + 1
        if offset >= hw or not batches:
            break
    return hw, out


def fetch_v11(conn: Conn, topic, partition, offset=0, current_leader_epoch=-1, max_bytes=1 << 20,
              max_wait_ms=100, replica_id=-1):
    """Fetch v11 (the last non-flexible version) of one partition, as a consumer sends it
    (replica_id -1) with `current_leader_epoch` (-1: not checked, KIP-320).
    Returns (error_code, high_watermark, records_bytes)."""
    body = (
        i32(replica_id)
        + i32(max_wait_ms)
        + i32(1)  # min bytes
        + i32(max_bytes)
        + i8(0)  # read_uncommitted
        + i32(0)  # session id: no fetch session
        + i32(-1)  # session epoch: full fetch, no session
        + array([string(topic) + array([i32(partition) + i32(current_leader_epoch) + i64(offset) + i64(-1)
                                       + i32(max_bytes)])])
        + array([])  # forgotten topics
        + string("")  # rack id
    )
    r = conn.request(FETCH, 11, body)
    r.i32()  # throttle
    r.i16()  # top-level error
    r.i32()  # session id
    for _ in range(r.i32()):
        r.string()
        for _ in range(r.i32()):
            r.i32()
            err = r.i16()
            hw = r.i64()
            r.i64()  # last stable offset
            r.i64()  # log start offset
            r.array(lambda x: (x.i64(), x.i64()))
            r.i32()  # preferred read replica
            return err, hw, r.bytes_()
    raise AssertionError("empty fetch response")


def list_offsets_v1(conn: Conn, topic, partitions, timestamp=-1):
    """ListOffsets v1 (timestamp -1 = latest, -2 = earliest). Returns {partition: (err, offset)}."""
    body = i32(-1) + array([string(topic) + array(i32(p) + i64(timestamp) for p in partitions)])
    r = conn.request(LIST_OFFSETS, 1, body)
    out = {}
    for _ in range(r.i32()):
        r.string()
        for _ in range(r.i32()):
            p = r.i32()
            err = r.i16()
            r.i64()  # timestamp
            off = r.i64()
            out[p] = (err, off)
    return out


def list_offsets_v7(conn: Conn, topic, partitions, timestamp, current_leader_epoch=-1):
    """ListOffsets v7 (flexible; timestamp -3 = MAX_TIMESTAMP; current_leader_epoch -1 = not
    checked). Returns {partition: (err, timestamp, offset)}."""
    name = topic.encode()
    parts = [i32(p) + i32(current_leader_epoch) + i64(timestamp) + b"\x00" for p in partitions]
    topic_body = uvarint(len(name) + 1) + name + uvarint(len(parts) + 1) + b"".join(parts) + b"\x00"
    body = i32(-1) + i8(0) + uvarint(2) + topic_body + b"\x00"
    r = conn.request(LIST_OFFSETS, 7, body, flexible=True)
    r.uvarint()  # response header tagged fields
    r.i32()  # throttle
    out = {}
    for _ in range(r.uvarint() - 1):
        r.take(r.uvarint() - 1)  # topic name
        for _ in range(r.uvarint() - 1):
            p = r.i32()
            err = r.i16()
            ts = r.i64()
            off = r.i64()
            r.i32()  # leader epoch
            r.uvarint()  # tagged fields
            out[p] = (err, ts, off)
        r.uvarint()
    return out


def offset_for_leader_epoch_v3(conn: Conn, topic, partition, leader_epoch, current_leader_epoch=-1):
    """OffsetForLeaderEpoch v3 as a consumer sends it (replica id -1).
    Returns (error_code, leader_epoch, end_offset)."""
    body = i32(-1) + array(
        [string(topic) + array([i32(partition) + i32(current_leader_epoch) + i32(leader_epoch)])]
    )
    r = conn.request(OFFSET_FOR_LEADER_EPOCH, 3, body)
    r.i32()  # throttle
    for _ in range(r.i32()):
        r.string()
        for _ in range(r.i32()):
            err = r.i16()
            r.i32()  # partition
            return err, r.i32(), r.i64()
    raise AssertionError("empty OffsetForLeaderEpoch response")


def create_topics_v2(conn: Conn, topic, partitions, replication=1, timeout_ms=30000):
    body = (
        array([string(topic) + i32(partitions) + i16(replication) + array([]) + array([])])
        + i32(timeout_ms)
        + i8(0)
    )
    r = conn.request(CREATE_TOPICS, 2, body)
    r.i32()  # throttle
    res = r.array(lambda x: (x.string(), x.i16(), x.string()))
    if res[0][1] == NONE:
        wait_served(conn, topic, partitions)
    return res[0][1], res[0][2]


def wait_served(conn: Conn, topic, partitions, timeout=10.0):
    """Waits until the broker answers ListOffsets for every partition of a topic it just
    created: Kafka learns that it leads them a moment after CreateTopics answers (until then
    NOT_LEADER_OR_FOLLOWER), Spate at once. Gives up quietly after `timeout` (the partition may
    be led elsewhere: the test's own requests then say what is wrong)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        answers = list_offsets_v1(conn, topic, range(partitions))
        if all(err not in (UNKNOWN_TOPIC_OR_PARTITION, LEADER_NOT_AVAILABLE, NOT_LEADER_OR_FOLLOWER)
               for err, _ in answers.values()):
            return
        time.sleep(0.05)


# ---------------------------------------------------------------------------------------------
# consumer groups (classic protocol, last non-flexible versions)
# ---------------------------------------------------------------------------------------------
def find_coordinator_v1(conn: Conn, key, key_type=0):
    """Returns (error_code, node_id, host, port)."""
    r = conn.request(FIND_COORDINATOR, 1, string(key) + i8(key_type))
    r.i32()  # throttle
    err = r.i16()
    r.string()  # error message
    return err, r.i32(), r.string(), r.i32()


def join_group_v5_body(group, member_id="", protocols=None,
                       session_timeout_ms=10000, rebalance_timeout_ms=30000, instance_id=None,
                       protocol_type="consumer"):
    if protocols is None:
        protocols = [("range", consumer_protocol_metadata([]))]
    return (
        string(group)
        + i32(session_timeout_ms)
        + i32(rebalance_timeout_ms)
        + string(member_id)
        + string(instance_id)
        + string(protocol_type)
        + array(string(name) + bytes_(meta) for name, meta in protocols)
    )


@dataclass
class JoinResult:
    error: int
    generation: int
    protocol: str | None
    leader: str
    member_id: str
    members: list  # [(member_id, instance_id, metadata)]


def parse_join_group_v5(r: Reader) -> JoinResult:
    r.i32()  # throttle
    err = r.i16()
    gen = r.i32()
    proto = r.string()
    leader = r.string()
    member = r.string()
    members = r.array(lambda x: (x.string(), x.string(), x.bytes_()))
    return JoinResult(err, gen, proto, leader, member, members or [])


def join_group_v5(conn: Conn, group, member_id="", **kw) -> JoinResult:
    return parse_join_group_v5(conn.request(JOIN_GROUP, 5, join_group_v5_body(group, member_id, **kw)))


def sync_group_v3_body(group, generation, member_id, assignments=(), instance_id=None):
    """assignments: [(member_id, assignment_bytes)] (only the leader sends them)."""
    return (
        string(group)
        + i32(generation)
        + string(member_id)
        + string(instance_id)
        + array(string(m) + bytes_(a) for m, a in assignments)
    )


def parse_sync_group_v3(r: Reader):
    """Returns (error_code, assignment_bytes)."""
    r.i32()  # throttle
    return r.i16(), r.bytes_()


def sync_group_v3(conn: Conn, group, generation, member_id, assignments=()):
    return parse_sync_group_v3(conn.request(SYNC_GROUP, 3, sync_group_v3_body(group, generation, member_id, assignments)))


def heartbeat_v3(conn: Conn, group, generation, member_id, instance_id=None) -> int:
    r = conn.request(HEARTBEAT, 3, string(group) + i32(generation) + string(member_id) + string(instance_id))
    r.i32()  # throttle
    return r.i16()


def leave_group_v3(conn: Conn, group, member_ids):
    """Returns (error_code, [(member_id, error_code)])."""
    r = conn.request(LEAVE_GROUP, 3, string(group) + array(string(m) + string(None) for m in member_ids))
    r.i32()  # throttle
    err = r.i16()
    members = r.array(lambda x: (x.string(), x.string(), x.i16()))
    return err, [(m, e) for m, _, e in members or []]


def offset_commit_v7(conn: Conn, group, offsets, generation=-1, member_id="", instance_id=None):
    """offsets: {topic: {partition: offset}}. Returns {(topic, partition): error_code}."""
    body = (
        string(group)
        + i32(generation)
        + string(member_id)
        + string(instance_id)
        + array(
            string(t) + array(i32(p) + i64(o) + i32(-1) + string(None) for p, o in parts.items())
            for t, parts in offsets.items()
        )
    )
    r = conn.request(OFFSET_COMMIT, 7, body)
    r.i32()  # throttle
    out = {}
    for _ in range(r.i32()):
        t = r.string()
        for _ in range(r.i32()):
            p = r.i32()
            out[(t, p)] = r.i16()
    return out


def offset_fetch_v5(conn: Conn, group, topics):
    """topics: {topic: [partitions]}. Returns (error_code, {(topic, partition): (offset, error_code)})."""
    body = string(group) + array(string(t) + array(i32(p) for p in ps) for t, ps in topics.items())
    r = conn.request(OFFSET_FETCH, 5, body)
    r.i32()  # throttle
    out = {}
    for _ in range(r.i32()):
        t = r.string()
        for _ in range(r.i32()):
            p = r.i32()
            off = r.i64()
            r.i32()  # leader epoch
            r.string()  # metadata
            out[(t, p)] = (off, r.i16())
    return r.i16(), out


def consumer_protocol_metadata(topics, version=0) -> bytes:
    """ConsumerProtocolSubscription v0: the metadata a consumer puts in JoinGroup."""
    return i16(version) + array(string(t) for t in topics) + bytes_(b"")


def consumer_protocol_assignment(assignment, version=0) -> bytes:
    """ConsumerProtocolAssignment v0 from {topic: [partitions]}."""
    return i16(version) + array(string(t) + array(i32(p) for p in ps) for t, ps in assignment.items()) + bytes_(b"")


# ---------------------------------------------------------------------------------------------
# flexible versions: compact strings/arrays, tagged fields, KIP-951 leader hints
# ---------------------------------------------------------------------------------------------
def compact_string(s):
    if s is None:
        return uvarint(0)
    b = s.encode() if isinstance(s, str) else s
    return uvarint(len(b) + 1) + b


def compact_array(items):
    items = list(items)
    return uvarint(len(items) + 1) + b"".join(items)


NO_TAGS = uvarint(0)


def flexible_request(conn: Conn, api_key, api_version, body: bytes) -> Reader:
    """Sends with request header v2; returns the reader past response header v1."""
    r = conn.request(api_key, api_version, body, flexible=True)
    r.tagged_fields()
    return r


@dataclass
class Endpoint:
    node_id: int
    host: str
    port: int
    rack: str | None


def _leader_and_epoch(raw: bytes):
    r = Reader(raw)
    leader, epoch = r.i32(), r.i32()
    r.tagged_fields()
    return leader, epoch


def _node_endpoints(raw: bytes) -> dict:
    r = Reader(raw)

    def one(x):
        e = Endpoint(x.i32(), x.compact_string(), x.i32(), x.compact_string())
        x.tagged_fields()
        return e

    return {e.node_id: e for e in r.compact_array(one)}


@dataclass
class HintedAnswer:
    """One partition's answer with its KIP-951 hint: (leader, epoch) of `CurrentLeader`
    ((-1, -1) when absent) and the answer's `NodeEndpoints` by node id."""
    error: int
    current_leader: tuple
    endpoints: dict
    base_offset: int = -1


def produce_v12(conn: Conn, topic, partition, batch: bytes, acks=-1, timeout_ms=30000) -> HintedAnswer:
    """Produce v12 (flexible, topics by name) of one partition."""
    body = (
        compact_string(None)  # transactional id
        + i16(acks)
        + i32(timeout_ms)
        + compact_array([compact_string(topic) + compact_array([i32(partition) + compact_string(batch) + NO_TAGS])
                         + NO_TAGS])
        + NO_TAGS
    )
    r = flexible_request(conn, PRODUCE, 12, body)
    answers = []

    def partition_answer(x):
        x.i32()  # index
        err, base = x.i16(), x.i64()
        x.i64()  # log append time
        x.i64()  # log start offset
        x.compact_array(lambda y: (y.i32(), y.compact_string(), y.tagged_fields()))  # record errors
        x.compact_string()  # error message
        tags = x.tagged_fields()
        leader = _leader_and_epoch(tags[0]) if 0 in tags else (-1, -1)
        answers.append((err, base, leader))

    r.compact_array(lambda x: (x.compact_string(), x.compact_array(partition_answer), x.tagged_fields()))
    r.i32()  # throttle
    tags = r.tagged_fields()
    endpoints = _node_endpoints(tags[0]) if 0 in tags else {}
    assert len(answers) == 1, answers
    err, base, leader = answers[0]
    return HintedAnswer(err, leader, endpoints, base)


def fetch_v16(conn: Conn, topic_id: bytes, partition, offset=0, current_leader_epoch=-1, max_bytes=1 << 20,
              max_wait_ms=100) -> HintedAnswer:
    """Fetch v16 (flexible, topics by id) of one partition, as a consumer sends it."""
    body = (
        i32(max_wait_ms)
        + i32(1)  # min bytes
        + i32(max_bytes)
        + i8(0)  # read_uncommitted
        + i32(0)  # session id: no fetch session
        + i32(-1)  # session epoch: full fetch
        + compact_array([topic_id + compact_array([i32(partition) + i32(current_leader_epoch) + i64(offset) + i32(-1)
                                                   + i64(-1) + i32(max_bytes) + NO_TAGS]) + NO_TAGS])
        + compact_array([])  # forgotten topics
        + compact_string("")  # rack id
        + NO_TAGS
    )
    r = flexible_request(conn, FETCH, 16, body)
    r.i32()  # throttle
    r.i16()  # top-level error
    r.i32()  # session id
    answers = []

    def partition_answer(x):
        x.i32()  # index
        err = x.i16()
        x.i64(), x.i64(), x.i64()  # high watermark, last stable offset, log start offset
        x.compact_array(lambda y: (y.i64(), y.i64(), y.tagged_fields()))  # aborted transactions
        x.i32()  # preferred read replica
        x.compact_bytes()  # records
        tags = x.tagged_fields()
        answers.append((err, _leader_and_epoch(tags[1]) if 1 in tags else (-1, -1)))

    r.compact_array(lambda x: (x.uuid(), x.compact_array(partition_answer), x.tagged_fields()))
    tags = r.tagged_fields()
    endpoints = _node_endpoints(tags[0]) if 0 in tags else {}
    assert len(answers) == 1, answers
    err, leader = answers[0]
    return HintedAnswer(err, leader, endpoints)


@dataclass
class DescribedTopic:
    error: int
    name: str
    topic_id: bytes
    is_internal: bool
    partitions: dict  # index -> PartitionMeta (offline = offline replicas)
    elr: dict  # index -> (eligible leader replicas, last known ELR)
    authorized_operations: int


def describe_topic_partitions_v0(conn: Conn, topics=(), limit=2000, cursor=None):
    """DescribeTopicPartitions v0 (`topics` empty: all). `cursor` is (topic, partition) or None.
    Returns ([DescribedTopic] in answer order, next cursor (topic, partition) or None)."""
    body = compact_array(compact_string(t) + NO_TAGS for t in topics) + i32(limit)
    body += i8(-1) if cursor is None else i8(1) + compact_string(cursor[0]) + i32(cursor[1]) + NO_TAGS
    body += NO_TAGS
    r = flexible_request(conn, DESCRIBE_TOPIC_PARTITIONS, 0, body)
    r.i32()  # throttle

    def topic_answer(x):
        err, name, topic_id, internal = x.i16(), x.compact_string(), x.uuid(), x.i8() == 1
        parts, elr = {}, {}

        def partition_answer(y):
            perr, idx, leader, epoch = y.i16(), y.i32(), y.i32(), y.i32()
            replicas = y.compact_array(lambda z: z.i32())
            isr = y.compact_array(lambda z: z.i32())
            elr[idx] = (y.compact_array(lambda z: z.i32()), y.compact_array(lambda z: z.i32()))
            offline = y.compact_array(lambda z: z.i32())
            y.tagged_fields()
            parts[idx] = PartitionMeta(perr, leader, epoch, replicas, isr, offline)

        x.compact_array(partition_answer)
        ops = x.i32()
        x.tagged_fields()
        return DescribedTopic(err, name, topic_id, internal, parts, elr, ops)

    found = r.compact_array(topic_answer)
    next_cursor = None
    if r.i8() >= 0:
        next_cursor = (r.compact_string(), r.i32())
        r.tagged_fields()
    r.tagged_fields()
    assert r.remaining() == 0, f"{r.remaining()} bytes left in the DescribeTopicPartitions answer"
    return found, next_cursor


def delete_topics_v6(conn: Conn, topics, timeout_ms=30000):
    """DeleteTopics v6 (flexible), topics named by (name or None, topic id: 16 bytes). Returns
    [(name, topic id, error_code, error_message)] in answer order."""
    body = compact_array(compact_string(name) + topic_id + NO_TAGS for name, topic_id in topics)
    body += i32(timeout_ms) + NO_TAGS
    r = flexible_request(conn, DELETE_TOPICS, 6, body)
    r.i32()  # throttle

    def answer(x):
        name, topic_id, err, msg = x.compact_string(), x.uuid(), x.i16(), x.compact_string()
        x.tagged_fields()
        return name, topic_id, err, msg

    return r.compact_array(answer)

