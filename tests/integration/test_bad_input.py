"""Hostile or broken input over raw sockets, one case per test.

Each case runs next to a well-behaved client (HealthyClient: a confluent-kafka producer in a
thread) that must not notice anything; afterwards the broker still answers ApiVersions and
nothing from a rejected batch can be read."""

import time

import pytest

import kafka_wire as w
from helpers import HealthyClient, create_topic

BAD_TOPIC = "bad"


def assert_alive(broker):
    assert broker.alive(), f"broker died (exit {broker.proc.returncode})\n{broker.log_tail()}"
    with w.Conn(broker.host, broker.port) as c:
        err, ranges = w.api_versions(c, 0)
    assert err == 0, f"ApiVersions v0 error {err}"
    for k in (w.PRODUCE, w.FETCH, w.METADATA, w.API_VERSIONS):
        assert k in ranges, f"ApiVersions lacks api key {k}: {ranges}"


def assert_empty(broker, topic=BAD_TOPIC, partition=0):
    with w.Conn(broker.host, broker.port) as c:
        err, hw, data = w.fetch_v4(c, topic, partition)
    assert err == 0, f"fetch {topic}/{partition}: error {err}"
    assert hw == 0, f"{topic}/{partition} has high watermark {hw}: a rejected batch was stored"
    assert not w.decode_batches(data), f"{topic}/{partition} returned records from a rejected batch"


def expect_closed_after(broker, data: bytes):
    """Send `data` on a fresh connection and require the broker to close it without replying."""
    with w.Conn(broker.host, broker.port) as c:
        try:
            c.send_raw(data)
        except (BrokenPipeError, ConnectionResetError):
            return  # closed while we were still sending: fine
        got = c.expect_closed(timeout=10)
    assert got == b"", f"broker replied {got[:64]!r} instead of closing the connection"


def good_batch(n=3, tag="bad"):
    return w.record_batch([w.Rec(f"k{j}".encode(), f"{tag}-{j}".encode(), [("j", str(j).encode())], j)
                           for j in range(n)])


@pytest.fixture
def healthy(broker):
    with HealthyClient(broker.bootstrap) as h:
        yield h


# (a)
def test_negative_frame_size(broker, healthy):
    expect_closed_after(broker, w.i32(-1) + b"\x00" * 16)
    expect_closed_after(broker, w.i32(-0x7FFFFFFF))
    healthy.stop_and_verify()
    assert_alive(broker)


# (b)
@pytest.mark.parametrize("settings", [{"socket.request.max.bytes": 1048576}], ids=["max1MiB"])
def test_frame_above_socket_request_max_bytes(broker_factory, settings):
    broker = broker_factory(settings)
    with HealthyClient(broker.bootstrap) as healthy:
        # claim 2 MiB, send only the start of it: the broker must refuse from the size alone
        header = w.request_header(w.PRODUCE, 3, 1)
        expect_closed_after(broker, w.i32(2 * 1024 * 1024) + header + b"\x00" * 65536)
        healthy.stop_and_verify()
    assert_alive(broker)


# (c)
def test_truncated_or_malformed_request(broker, healthy):
    create_topic(broker.bootstrap, BAD_TOPIC, 1)
    # a frame too short to hold a request header
    expect_closed_after(broker, w.i32(3) + b"\x00\x03\x00")
    # header whose client_id length runs past the end of the frame
    payload = w.i16(w.METADATA) + w.i16(1) + w.i32(7) + w.i16(500) + b"abc"
    expect_closed_after(broker, w.i32(len(payload)) + payload)
    # Produce v3 whose records field claims more bytes than the frame holds
    batch = good_batch()
    body = (w.string(None) + w.i16(-1) + w.i32(30000)
            + w.array([w.string(BAD_TOPIC) + w.array([w.i32(0) + w.i32(len(batch) + 1000) + batch])]))
    payload = w.request_header(w.PRODUCE, 3, 8) + body
    expect_closed_after(broker, w.i32(len(payload)) + payload)
    # pure garbage of a plausible size
    garbage = bytes((i * 131 + 7) & 0xFF for i in range(200))
    expect_closed_after(broker, w.i32(len(garbage)) + garbage)
    healthy.stop_and_verify()
    assert_alive(broker)
    assert_empty(broker)


# (d)
def test_unknown_api_key(broker, healthy):
    payload = w.request_header(999, 0, 1)
    expect_closed_after(broker, w.i32(len(payload)) + payload)
    healthy.stop_and_verify()
    assert_alive(broker)


# (e)
def test_unsupported_api_version(broker, healthy):
    payload = w.request_header(w.METADATA, 99, 1) + w.i32(-1)
    expect_closed_after(broker, w.i32(len(payload)) + payload)

    # ApiVersions from the future: answered, as Kafka's ApiVersionsRequest.getErrorResponse
    # does, with a v0 response carrying UNSUPPORTED_VERSION and ApiVersions' own range only,
    # so the client can ask again with a version the broker knows; that answer lists the rest.
    body = w.uvarint(len(b"spate-it") + 1) + b"spate-it" + w.uvarint(len(b"9.9") + 1) + b"9.9" + b"\x00"
    with w.Conn(broker.host, broker.port) as c:
        c.send_frame(w.request_header(w.API_VERSIONS, 99, 4242, flexible=True) + body)
        r = w.Reader(c.recv_frame())
        assert r.i32() == 4242, "correlation id"
        err, ranges = w.parse_api_versions_v0(r)
        assert err == w.UNSUPPORTED_VERSION, f"ApiVersions v99: error {err}, expected 35"
        assert list(ranges) == [w.API_VERSIONS] and ranges[w.API_VERSIONS][1] >= 3, ranges
        err, ranges = w.api_versions(c, 0)
    assert err == 0
    assert w.PRODUCE in ranges and ranges[w.PRODUCE][1] >= 9, f"Produce range {ranges.get(w.PRODUCE)}"
    assert w.FETCH in ranges and ranges[w.FETCH][1] >= 12, f"Fetch range {ranges.get(w.FETCH)}"
    healthy.stop_and_verify()
    assert_alive(broker)


def _produce_bad(broker, batch):
    with w.Conn(broker.host, broker.port) as c:
        err, _ = w.produce_v3(c, BAD_TOPIC, 0, batch)
    return err


# (f)
def test_corrupt_crc(broker, healthy):
    create_topic(broker.bootstrap, BAD_TOPIC, 1)
    batch = w.record_batch([w.Rec(b"k", b"v" * 50)] * 3, corrupt_crc=True)
    err = _produce_bad(broker, batch)
    assert err == w.CORRUPT_MESSAGE, f"corrupt CRC: error {err}, expected 2"
    # a flipped payload byte (CRC left as computed for the original) is caught too
    ok = bytearray(good_batch())
    ok[-3] ^= 0xFF
    err = _produce_bad(broker, bytes(ok))
    assert err == w.CORRUPT_MESSAGE, f"flipped payload byte: error {err}, expected 2"
    healthy.stop_and_verify()
    assert_alive(broker)
    assert_empty(broker)


# (g) a bad magic, (h) a record count that does not match the records, (l) a control batch
# (only the broker writes transaction markers): each refused with Kafka's error, nothing written.
REFUSED_BATCHES = {
    "bad_magic": (dict(magic=1), w.INVALID_RECORD),
    "count_more_than_present": (dict(count=3), w.INVALID_RECORD),
    "count_fewer_than_present": (dict(count=1), w.INVALID_RECORD),
    "control_batch_from_a_client": (dict(attributes=0x20), w.INVALID_RECORD),
}


# (m) the LogAppendTime timestamp type (the broker's to set) claimed by a client on a
# CreateTime topic: as Kafka's LogValidator, accepted and stored as CreateTime (the attribute
# cleared, the CRC recomputed, the batch's max timestamp kept).
def test_log_append_time_claimed_by_a_client_is_stored_as_create_time(broker, healthy):
    create_topic(broker.bootstrap, BAD_TOPIC, 1)
    recs = [w.Rec(b"k0", b"v0"), w.Rec(b"k1", b"v1")]
    ts = int(time.time() * 1000)
    err = _produce_bad(broker, w.record_batch(recs, attributes=0x08, base_timestamp=ts))
    assert err == 0, f"error {err}, expected 0"
    with w.Conn(broker.host, broker.port) as c:
        err, hw, data = w.fetch_v4(c, BAD_TOPIC, 0, 0)
    assert (err, hw) == (0, 2)
    [batch] = w.decode_batches(data)
    assert batch.attributes & 0x08 == 0, f"attributes {batch.attributes:#x}: still LogAppendTime"
    assert batch.crc_ok, "the CRC covers the rewritten attributes"
    assert [(r[1], r[2]) for r in batch.records] == [(b"k0", b"v0"), (b"k1", b"v1")]
    healthy.stop_and_verify()
    assert_alive(broker)


@pytest.mark.parametrize("case", list(REFUSED_BATCHES))
def test_refused_batch(broker, healthy, case):
    header, expected = REFUSED_BATCHES[case]
    create_topic(broker.bootstrap, BAD_TOPIC, 1)
    recs = [w.Rec(b"k0", b"v0"), w.Rec(b"k1", b"v1")]
    err = _produce_bad(broker, w.record_batch(recs, **header))
    assert err == expected, f"{case}: error {err}, expected {expected}"
    healthy.stop_and_verify()
    assert_alive(broker)
    assert_empty(broker)


# (i)
@pytest.mark.parametrize("settings", [{"auto.create.topics.enable": "false"}], ids=["no_autocreate"])
def test_produce_to_missing_topic(broker_factory, settings):
    broker = broker_factory(settings)
    with HealthyClient(broker.bootstrap) as healthy:
        err = _produce_bad(broker, good_batch())
        assert err == w.UNKNOWN_TOPIC_OR_PARTITION, f"missing topic: error {err}, expected 3"
        healthy.stop_and_verify()
    assert_alive(broker)
    with w.Conn(broker.host, broker.port) as c:
        _, topics = w.metadata_v1(c, [BAD_TOPIC])
    assert topics.get(BAD_TOPIC, (None,))[0] == w.UNKNOWN_TOPIC_OR_PARTITION, (
        f"topic was created despite auto.create.topics.enable=false: {topics}"
    )


# (j)
def test_absurd_array_count(broker, healthy):
    payload = w.request_header(w.METADATA, 1, 1) + w.i32(0x7FFFFFFF)
    expect_closed_after(broker, w.i32(len(payload)) + payload)
    # same inside a Produce: 2^31-1 topics, none present
    payload = w.request_header(w.PRODUCE, 3, 2) + w.string(None) + w.i16(-1) + w.i32(1000) + w.i32(0x7FFFFFFF)
    expect_closed_after(broker, w.i32(len(payload)) + payload)
    healthy.stop_and_verify()
    assert_alive(broker)


# (k)
def test_zero_frame_size(broker, healthy):
    expect_closed_after(broker, w.i32(0))
    healthy.stop_and_verify()
    assert_alive(broker)


def test_well_formed_requests_still_work_after_abuse(broker):
    """Sanity: the same raw encoder that builds the bad requests gets a good one accepted."""
    create_topic(broker.bootstrap, "raw-ok", 1)
    with w.Conn(broker.host, broker.port) as c:
        err, base = w.produce_v3(c, "raw-ok", 0, good_batch(4, "ok"))
        assert (err, base) == (0, 0), f"good raw produce: error {err}, base {base}"
        hw, recs = w.fetch_all_v4(c, "raw-ok", 0)
    assert hw == 4 and [r[2] for r in recs] == [f"ok-{j}".encode() for j in range(4)]
