"""Back-pressure: an acks=0 producer faster than the disk is held back by the broker instead of
filling its memory. Each partition's write backlog (appended, not yet written) stays within its
tail cache bound, produce requests wait for room, the connections stop reading once the requests
they hold pass `queued.max.request.bytes` (here one shard's whole share), and every record sent is kept. The disk is made slow
by a blkio write throttle on a loop-mounted ext4 made by the test."""

from __future__ import annotations

import contextlib
import os
import time
import uuid
from pathlib import Path

import pytest
from confluent_kafka import Producer

from conftest import SPATE_BIN, Broker
from helpers import create_topic, end_offsets, loop_fs
from metrics_scrape import scrape

pytestmark = pytest.mark.spate_only("Spate's write backlog and admin endpoint")

MIB = 1 << 20
THROTTLE_BPS = 4 * MIB
CACHE_BOUND = 4 * MIB
READ_AHEAD_BYTES = 8 * MIB
BLKIO = Path("/sys/fs/cgroup/blkio")


@contextlib.contextmanager
def write_throttle(device, bps):
    """A blkio cgroup (v1) whose processes write to `device` at most `bps` bytes/s."""
    if not (BLKIO / "blkio.throttle.write_bps_device").exists():
        pytest.skip("no cgroup v1 blkio controller with write throttling here")
    group = BLKIO / f"spate-it-{uuid.uuid4().hex[:8]}"
    group.mkdir()
    rdev = os.stat(device).st_rdev
    try:
        (group / "blkio.throttle.write_bps_device").write_text(
            f"{os.major(rdev)}:{os.minor(rdev)} {bps}\n")
        yield group
    finally:
        lift(group)
        group.rmdir()


def lift(group):
    """Moves every process of `group` back to the root group (unthrottled)."""
    for pid in (group / "cgroup.procs").read_text().split():
        with contextlib.suppress(ProcessLookupError, OSError):
            (BLKIO / "cgroup.procs").write_text(pid)


def test_an_acks0_producer_faster_than_the_disk_is_held_back_and_loses_nothing():
    with loop_fs("backpressure", 1 << 30) as (mnt, device), \
            write_throttle(device, THROTTLE_BPS) as group:
        broker = Broker("backpressure", cores=1, settings={
            "log.cache.bytes.per.partition": str(CACHE_BOUND),
            "queued.max.request.bytes": str(READ_AHEAD_BYTES),
        })
        broker.data_dir.rmdir()  # the data dir lives on the throttled filesystem instead
        broker.data_dir = mnt / "data"
        broker.data_dir.mkdir()
        broker.start()
        try:
            topic = "backpressure-" + uuid.uuid4().hex[:6]
            create_topic(broker.bootstrap, topic, 1)
            rss_before = scrape(broker).value("spate_process_resident_memory_bytes")
            (group / "cgroup.procs").write_text(str(broker.proc.pid))
            producer, sent, peaks = flood(broker, topic, seconds=8)
            # It offered more than the disk could take, and its own queue filled up.
            assert sent * 1000 > 8 * THROTTLE_BPS, (sent, peaks)
            assert peaks["client_queue_full"] >= 1, peaks
            assert peaks["waiting"] >= 1, "produce waited for room in the write backlog"
            # The backlog's bound plus one batch in the chunk being filled.
            assert peaks["unwritten"] <= CACHE_BOUND + 2 * MIB, peaks
            assert peaks["cache"] <= 2 * CACHE_BOUND, peaks
            # Without back-pressure the backlog would hold most of what was offered.
            assert peaks["rss"] - rss_before < 128 * MIB, (peaks, rss_before)
            lift(group)
            # acks=0: a record counts as sent once it is on the wire.
            remaining = producer.flush(120)
            assert remaining == 0, f"{remaining} records never left the client"
            deadline = time.time() + 120
            while end_offsets(broker.bootstrap, topic, 1)[0] < sent and time.time() < deadline:
                time.sleep(0.5)
            assert end_offsets(broker.bootstrap, topic, 1) == {0: sent}, "every record sent is kept"
        finally:
            lift(group)
            broker.stop()


def flood(broker, topic, seconds):
    """Produces 1000-byte records with acks=0 as fast as the client can for `seconds`,
    scraping the broker meanwhile; returns (the producer, records handed to it, peak gauges)."""
    p = Producer({"bootstrap.servers": broker.bootstrap, "acks": 0, "linger.ms": 5,
                  "queue.buffering.max.kbytes": 16 * 1024})
    value = b"b" * 1000
    sent, peaks = 0, {"unwritten": 0, "waiting": 0, "cache": 0, "rss": 0, "client_queue_full": 0}
    end, next_scrape = time.time() + seconds, 0.0
    while time.time() < end:
        for _ in range(1000):
            try:
                p.produce(topic, value=value, partition=0)
                sent += 1
            except BufferError:
                peaks["client_queue_full"] += 1
                p.poll(0.05)
                break
        p.poll(0)
        if time.time() >= next_scrape:
            s = scrape(broker)
            for key, name, labels in (("unwritten", "spate_shard_unwritten_bytes", {"shard": "0"}),
                                      ("waiting", "spate_shard_produce_waiting_for_room", {"shard": "0"}),
                                      ("cache", "spate_log_cache_bytes", {"topic": topic, "partition": "0"}),
                                      ("rss", "spate_process_resident_memory_bytes", {})):
                peaks[key] = max(peaks[key], s.value(name, **labels))
            next_scrape = time.time() + 0.2
    return p, sent, peaks
