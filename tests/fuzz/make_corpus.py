#!/usr/bin/env python3
"""Regenerates the seed corpus of the fuzz targets (tests/fuzz/corpus/).

fuzz_decoder input: byte 0 selects max_len (low 3 bits: 0, 1, 16, 64, 256,
4096, 64 KiB, 16 MiB), bytes 1..4 seed the split sizes, the rest is the
stream.  Every seed is a small, valid wire protocol v1 stream (or one that
fails in a known way), so the fuzzer starts from the real format.
"""
import os
import struct
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
HELLO, CHALLENGE, AUTH, WELCOME, DATA, ACK, NACK, PING, PONG, BYE = range(1, 11)
ML_256, ML_4096, ML_64K = 4, 5, 6


def frame(typ, payload=b"", seq=0, flags=0, topic=0, ts=0, version=1, magic=b"MI", bad_pcrc=False,
          length=None):
    n = len(payload) if length is None else length
    pcrc = zlib.crc32(payload) ^ (1 if bad_pcrc else 0)
    head = magic + struct.pack("<BBHHIIQQ", version, typ, flags, topic, n, pcrc, seq, ts)
    return head + struct.pack("<I", zlib.crc32(head)) + payload


def hello(dev=b"dev-1", fpr=None):
    p = bytes([len(dev)]) + dev + bytes(range(16))
    return frame(HELLO, p + (fpr or b""), flags=1 if fpr else 0)


def seed_file(maxsel, split_seed, stream):
    return bytes([maxsel]) + struct.pack("<I", split_seed) + stream


SEEDS = {
    "hello": seed_file(ML_64K, 1, hello()),
    "hello_fpr": seed_file(ML_64K, 7, hello(b"gw:7.a_b-c", bytes(32))),
    "data": seed_file(ML_64K, 3, frame(DATA, b"temperature=21.5", seq=1, ts=1714564800123000000)),
    "session": seed_file(ML_4096, 0x1234, hello() + b"".join(
        frame(DATA, bytes([i]) * (i * 7), seq=i + 1, topic=i % 3) for i in range(5))
        + frame(PING) + frame(BYE)),
    "empty_frames": seed_file(ML_256, 9, frame(PING) + frame(PONG) + frame(DATA, seq=1) + frame(BYE)),
    "too_large": seed_file(ML_256, 5, frame(DATA, bytes(300), seq=1) + frame(DATA, b"ok", seq=2)),
    "bad_pcrc": seed_file(ML_4096, 11, frame(DATA, b"abc", seq=1, bad_pcrc=True) + frame(DATA, b"d", seq=2)),
    "bad_version": seed_file(ML_4096, 13, frame(DATA, b"x", seq=1) + frame(DATA, b"y", version=2)),
    "over_cap": seed_file(ML_64K, 17, frame(DATA, b"", seq=1, length=(16 << 20) + 1)),
    "split_payload": seed_file(ML_64K, 0xdeadbeef, frame(DATA, bytes(range(256)) * 4, seq=9)),
    "garbage": seed_file(ML_64K, 2, b"GET / HTTP/1.1\r\n\r\n"),
    "ndjson": seed_file(ML_64K, 2, b'{"source":"s","data":"x","timestamp":"2024-05-01T12:00:00Z"}\n'),
}


def main():
    out = os.path.join(HERE, "corpus", "fuzz_decoder")
    os.makedirs(out, exist_ok=True)
    for name, blob in sorted(SEEDS.items()):
        with open(os.path.join(out, name), "wb") as f:
            f.write(blob)
    print("wrote %d seeds to %s" % (len(SEEDS), os.path.relpath(out)))


if __name__ == "__main__":
    main()
