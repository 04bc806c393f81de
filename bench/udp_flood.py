#!/usr/bin/env python3
"""bench/udp_flood.py — UDP datagrams at ingestd, a share of them malformed.

  udp_flood.py PORT SECONDS BAD_SHARE [DEVICES]

Sends as fast as one Python process can, for SECONDS, to 127.0.0.1:PORT:
good DATA datagrams (one frame each, device ids flood-0.., increasing
seqs) and, BAD_SHARE of the time, malformed ones (bad header CRC, then bad
magic, alternately).  Prints one JSON line: sent, good, bad.  Used by
bench/filter to compare ingestd's CPU per good frame with the kernel filter
attached and without it."""
import json
import socket
import struct
import sys
import time
import zlib

port, secs, bad_share = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
ndev = int(sys.argv[4]) if len(sys.argv) > 4 else 16


def frame(seq, dev, data=b"x" * 100, hcrc_ok=True, magic=b"MI"):
    pl = bytes([len(dev)]) + dev + data
    h = struct.pack("<2sBBHHIIQQ", magic, 1, 5, 0, 0, len(pl), zlib.crc32(pl), seq, 0)
    return h + struct.pack("<I", zlib.crc32(h) ^ (0 if hcrc_ok else 1)) + pl


s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
devs = [f"flood-{i}".encode() for i in range(ndev)]
bad = [frame(1, b"bad", hcrc_ok=False), frame(1, b"bad", magic=b"XX")]
sent = good = nbad = 0
acc = 0.0
end = time.monotonic() + secs
seq = 1
while time.monotonic() < end:
    for _ in range(256):
        acc += bad_share
        if acc >= 1.0:
            acc -= 1.0
            s.sendto(bad[nbad & 1], ("127.0.0.1", port))
            nbad += 1
        else:
            s.sendto(frame(seq, devs[seq % ndev]), ("127.0.0.1", port))
            seq += 1
            good += 1
        sent += 1
print(json.dumps({"sent": sent, "good": good, "bad": nbad}))
