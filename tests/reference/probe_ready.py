"""Exit 0 once a Kafka broker at HOST PORT answers ApiVersions v0 with more than one API."""
import socket
import struct
import sys

s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=2)
s.sendall(struct.pack(">ihhih", 10, 18, 0, 1, 0))
n = struct.unpack(">i", s.recv(4))[0]
buf = b""
while len(buf) < n:
    chunk = s.recv(n - len(buf))
    if not chunk:
        sys.exit(1)
    buf += chunk
sys.exit(0 if struct.unpack(">i", buf[6:10])[0] > 5 else 1)
