"""A disk whose reads or syncs can be made to fail: a tiny FUSE file system, spoken straight over
/dev/fuse (no library), that serves one file, `disk.img`, backed by a real file. SIGUSR1 makes
every read of it fail with EIO, SIGHUP every fsync of it (what the loop device does for the
cache flush behind an fdatasync), SIGUSR2 heals both; writes always succeed. A loop device over
`disk.img` then gives an ext4 whose data reads hit EIO on demand, as a failing disk does (what a
device-mapper `error`/`flakey` target would do, on kernels without device-mapper).

Run as `python3 faultyfs.py MOUNT_POINT BACKING_FILE` (root): prints "ready" once mounted, serves
until unmounted. The file is opened with FOPEN_DIRECT_IO, so no page cache sits between the
loop device and this process: every read of the device comes here.
"""

import ctypes
import errno
import os
import signal
import stat
import struct
import sys

FUSE_KERNEL_VERSION = 7
FUSE_KERNEL_MINOR = 31
MAX_WRITE = 128 << 10
READ_BUFFER_BYTES = MAX_WRITE + (64 << 10)
ROOT, FILE = 1, 2
NAME = b"disk.img"
FOPEN_DIRECT_IO = 1
FUSE_BIG_WRITES = 1 << 5

LOOKUP, FORGET, GETATTR, SETATTR = 1, 2, 3, 4
OPEN, READ, WRITE, STATFS, RELEASE, FSYNC = 14, 15, 16, 17, 18, 20
FLUSH, INIT, OPENDIR, READDIR, RELEASEDIR = 25, 26, 27, 28, 29
ACCESS, INTERRUPT, DESTROY, BATCH_FORGET = 34, 36, 38, 42
NO_REPLY = (FORGET, BATCH_FORGET, INTERRUPT)

IN_HEADER = struct.Struct("<IIQQIIII")
OUT_HEADER = struct.Struct("<IiQ")
READ_IN = struct.Struct("<QQIIQII")
WRITE_IN = struct.Struct("<QQIIQII")

failing = False
failing_syncs = False


def on_signal(signum, _frame):
    global failing, failing_syncs
    if signum == signal.SIGHUP:
        failing_syncs = True
        print("syncs fail", flush=True)
        return
    failing = signum == signal.SIGUSR1
    if not failing:
        failing_syncs = False
    print("reads " + ("fail" if failing else "work"), flush=True)


def attr(ino, size):
    if ino == ROOT:
        mode, nlink = stat.S_IFDIR | 0o755, 2
    else:
        mode, nlink = stat.S_IFREG | 0o644, 1
    return struct.pack("<QQQQQQIIIIIIIIII", ino, size, (size + 511) // 512, 0, 0, 0, 0, 0, 0,
                       mode, nlink, 0, 0, 0, 4096, 0)


def entry_out(ino, size):
    return struct.pack("<QQQQII", ino, 0, 1, 1, 0, 0) + attr(ino, size)


def attr_out(ino, size):
    return struct.pack("<QII", 1, 0, 0) + attr(ino, size)


def handle(opcode, nodeid, body, backing):
    """Answers one request: (errno, reply body)."""
    size = os.fstat(backing).st_size
    if opcode == INIT:
        major, minor, readahead, flags = struct.unpack_from("<IIII", body)
        assert major == FUSE_KERNEL_VERSION, major
        reply = struct.pack("<IIIIHHIIHHII", FUSE_KERNEL_VERSION, FUSE_KERNEL_MINOR, readahead,
                            flags & FUSE_BIG_WRITES, 16, 12, MAX_WRITE, 1, 0, 0, 0, 0)
        return 0, reply + bytes(24)
    if opcode == LOOKUP:
        if nodeid == ROOT and body.rstrip(b"\0") == NAME:
            return 0, entry_out(FILE, size)
        return errno.ENOENT, b""
    if opcode in (GETATTR, SETATTR):
        return 0, attr_out(nodeid, size)
    if opcode in (OPEN, OPENDIR):
        return 0, struct.pack("<QII", 0, FOPEN_DIRECT_IO if opcode == OPEN else 0, 0)
    if opcode == READ:
        _fh, offset, length, *_ = READ_IN.unpack_from(body)
        if failing:
            return errno.EIO, b""
        return 0, os.pread(backing, length, offset)
    if opcode == WRITE:
        _fh, offset, length, *_ = WRITE_IN.unpack_from(body)
        data = body[WRITE_IN.size:WRITE_IN.size + length]
        return 0, struct.pack("<II", os.pwrite(backing, data, offset), 0)
    if opcode == FSYNC:
        if failing_syncs:
            return errno.EIO, b""
        os.fsync(backing)
        return 0, b""
    if opcode == STATFS:
        blocks = size // 4096
        return 0, struct.pack("<QQQQQIIII", blocks, 0, 0, 2, 0, 4096, 255, 4096, 0) + bytes(24)
    if opcode in (READDIR,):
        return 0, b""
    if opcode in (FLUSH, RELEASE, RELEASEDIR, ACCESS, DESTROY):
        return 0, b""
    return errno.ENOSYS, b""


def mount(mount_point):
    fd = os.open("/dev/fuse", os.O_RDWR)
    libc = ctypes.CDLL(None, use_errno=True)
    options = f"fd={fd},rootmode=40000,user_id=0,group_id=0,allow_other".encode()
    ms_nosuid, ms_nodev = 2, 4
    if libc.mount(b"faultyfs", mount_point.encode(), b"fuse", ms_nosuid | ms_nodev, options) != 0:
        e = ctypes.get_errno()
        raise OSError(e, f"mounting fuse at {mount_point}: {os.strerror(e)}")
    return fd


def serve(fd, backing):
    while True:
        try:
            request = os.read(fd, READ_BUFFER_BYTES)
        except OSError as e:
            if e.errno == errno.ENOENT:  # an interrupted request vanished: read the next
                continue
            if e.errno == errno.ENODEV:  # unmounted
                return
            raise
        _len, opcode, unique, nodeid, *_ = IN_HEADER.unpack_from(request)
        if opcode in NO_REPLY:
            continue
        err, reply = handle(opcode, nodeid, request[IN_HEADER.size:], backing)
        if err:
            reply = b""
        try:
            os.write(fd, OUT_HEADER.pack(OUT_HEADER.size + len(reply), -err, unique) + reply)
        except OSError as e:
            if e.errno != errno.ENOENT:  # the request was interrupted meanwhile
                raise
        if opcode == DESTROY:
            return


def main():
    mount_point, backing_path = sys.argv[1], sys.argv[2]
    signal.signal(signal.SIGUSR1, on_signal)
    signal.signal(signal.SIGUSR2, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    backing = os.open(backing_path, os.O_RDWR)
    fd = mount(mount_point)
    print("ready", flush=True)
    serve(fd, backing)


if __name__ == "__main__":
    main()
