"""A full disk: on a small loop-mounted ext4 made by the test, produce gets KAFKA_STORAGE_ERROR
(56) for the partition that cannot write, the broker stays up and keeps serving reads, writes
resume by themselves once space is freed, and no acknowledged record is lost (also across a
kill -9)."""

import errno
import os
import time

import pytest

from conftest import Broker
from helpers import loop_fs
from kafka_wire import Conn, Rec, create_topics_v2, fetch_all_v4, fetch_v4, produce_v3, record_batch

pytestmark = pytest.mark.spate_only("Spate's data dir on a small file system and its retry log lines")

KAFKA_STORAGE_ERROR = 56
FS_BYTES = 48 << 20


@pytest.fixture
def small_fs():
    with loop_fs("enospc", FS_BYTES) as (mnt, _device):
        yield mnt


def fill(path):
    """Writes `path` until the filesystem is full; returns the bytes written."""
    written = 0
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        for chunk in (1 << 20, 4096):
            block = b"\xee" * chunk
            while True:
                try:
                    os.write(fd, block)
                    written += chunk
                except OSError as e:
                    assert e.errno == errno.ENOSPC, e
                    break
        os.fsync(fd)
    except OSError as e:
        assert e.errno == errno.ENOSPC, e
    finally:
        os.close(fd)
    return written


def batch(tag, i, size=6000):
    # Current timestamps: retention (7 days by default) must not remove them.
    return record_batch(
        [Rec(key=b"k%d" % i, value=(b"%s-%d-" % (tag, i)).ljust(size, b"."))],
        base_timestamp=int(time.time() * 1000),
    )


def test_disk_full_gives_storage_error_and_recovers_when_space_frees(small_fs):
    b = Broker("enospc", settings={"log.retention.check.interval.ms": "100"})
    b.data_dir.rmdir()  # the data dir lives on the small filesystem instead
    b.data_dir = small_fs / "data"
    b.data_dir.mkdir()
    try:
        b.start()
        run_scenario(b, small_fs)
    except BaseException:
        print(b.log_tail())
        raise
    finally:
        b.kill()
    b.log_path.unlink()


def run_scenario(b, mnt):
    acked = {}
    with Conn(b.host, b.port) as conn:
        for topic in ("full", "other"):
            err, msg = create_topics_v2(conn, topic, 1)
            assert err == 0, (err, msg)
        for i in range(20):
            err, off = produce_v3(conn, "full", 0, batch(b"before", i))
            assert err == 0
            acked[off] = b"before-%d-" % i
        assert produce_v3(conn, "other", 0, batch(b"other", 0))[0] == 0

        assert fill(mnt / "filler") > 0
        errors = []
        for i in range(50):
            err, off = produce_v3(conn, "full", 0, batch(b"full", i))
            errors.append(err)
            if err == 0:
                acked[off] = b"full-%d-" % i
            if err == KAFKA_STORAGE_ERROR:
                break
        assert errors[-1] == KAFKA_STORAGE_ERROR, errors
        # The broker is up and serves reads of this and other partitions.
        err, hw, data = fetch_v4(conn, "other", 0)
        assert err == 0 and hw == 1 and b"other-0-" in data
        err, hw, data = fetch_v4(conn, "full", 0)
        assert err == 0 and b"before-0-" in data

        os.unlink(mnt / "filler")
        deadline = time.monotonic() + 15
        i = 0
        while True:
            err, off = produce_v3(conn, "full", 0, batch(b"after", i))
            if err == 0:
                acked[off] = b"after-%d-" % i
                break
            assert err == KAFKA_STORAGE_ERROR, err
            assert time.monotonic() < deadline, "writes did not resume after space was freed"
            time.sleep(0.2)
        for j in range(1, 10):
            err, off = produce_v3(conn, "full", 0, batch(b"after", i + j))
            assert err == 0
            acked[off] = b"after-%d-" % (i + j)
        check_acked(conn, acked)
    b.wait_for_log("partition log write failed")
    b.kill()
    b.restart()
    with Conn(b.host, b.port) as conn:
        check_acked(conn, acked)


def check_acked(conn, acked):
    _, recs = fetch_all_v4(conn, "full", 0)
    by_offset = {r[0]: r[2] for r in recs}
    for off, prefix in acked.items():
        assert off in by_offset, f"acknowledged offset {off} missing"
        assert by_offset[off].startswith(prefix), (off, by_offset[off][:30], prefix)
