#!/usr/bin/env python3
"""Regenerates the seed corpus of the fuzz targets (tests/fuzz/corpus/). Files named
regress-* there are not made here: they are inputs that once crashed a target (kept so
the bug stays fixed), e.g. the use-after-frees fuzz_handshake found in ingestd.

fuzz_decoder input: byte 0 selects max_len (low 3 bits: 0, 1, 16, 64, 256,
4096, 64 KiB, 16 MiB), bytes 1..4 seed the split sizes, the rest is the
stream.  Every seed is a small, valid wire protocol v1 stream (or one that
fails in a known way), so the fuzzer starts from the real format.

fuzz_handshake input: byte 0 is the server configuration, then operations
(the layout is documented at the top of fuzz_handshake.c).  The seeds walk
the keys-mode handshake: complete exchanges for known devices (with and
without fingerprint, MAC and sealed DATA, ACKs), the refusals (unknown,
disabled, wrong proof, fingerprint), frames out of order, split and
garbled frames, takeover, backpressure, open mode.
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


# ---- fuzz_handshake ----

# config byte
REQUIRE_MAC, OPEN_MODE, OPEN_NDJSON = 1, 2, 16
MF_256, MF_1K, MF_4K, MF_64K = 0 << 2, 1 << 2, 2 << 2, 3 << 2
# opcodes; op byte = code | conn << 4 | HOLD | SPLIT (then the split byte)
OP_SEND, OP_HELLO, OP_AUTH, OP_DATA, OP_FRAME, OP_DURABLE, OP_CLOSE, OP_MUTE = range(8)
HOLD, SPLIT = 0x40, 0x80
# OP_HELLO sel: the ids of fuzz_handshake.c's hello_ids[]
SENSOR, GW, OLD, SEAL_ONLY, GHOST, SENSOR_CASE, ID_X, ID_64 = range(8)
HV_FPR, HV_BAD_FPR, HV_SAME_NONCE, HV_BAD_PCRC = 1, 2, 4, 8
AV_FLIP, AV_OTHER_KEY, AV_BAD_PCRC, AV_LAST_HELLO, AV_LEN33 = 1, 2, 4, 8, 16
DF_MAC, DF_SEAL, DF_SPOIL, DF_BAD_PCRC, DF_TS, DF_XFLAG = 1, 2, 4, 8, 16, 32
DS_NEXT, DS_GAP, DS_RETRY, DS_ABS = 0 << 6, 1 << 6, 2 << 6, 3 << 6
TELEMETRY, LOGS = 3, 4


def op(code, conn=0, hold=False, split=None):
    b = bytes([code | conn << 4 | (HOLD if hold else 0) | (SPLIT if split is not None else 0)])
    return b + (bytes([split]) if split is not None else b"")


def send(raw, conn=0, hold=False):
    return op(OP_SEND, conn, hold) + struct.pack("<H", len(raw)) + raw


def h_hello(sel=SENSOR, var=0, conn=0, **kw):
    return op(OP_HELLO, conn, **kw) + bytes([sel, var])


def h_auth(var=0, conn=0, **kw):
    return op(OP_AUTH, conn, **kw) + bytes([var])


def h_data(fl=0, sq=0, topic=0, plen=16, conn=0, **kw):
    return op(OP_DATA, conn, **kw) + bytes([fl, sq, topic, plen])


def h_frame(typ, flags=0, seq=0, payload=b"", conn=0, **kw):
    return op(OP_FRAME, conn, **kw) + bytes([typ, flags, seq]) + struct.pack("<H", len(payload)) + payload


def durable():
    return op(OP_DURABLE) + b"\0"


def close(conn=0, half=False):
    return op(OP_CLOSE, conn) + bytes([1 if half else 0])


def mute(conn=0, on=True):
    return op(OP_MUTE, conn) + bytes([0 if on else 1])


def hs(cfg, *ops):
    return bytes([cfg]) + b"".join(ops)


def raw_hello(dev=b"sensor-1", nonce=bytes(range(16)), fpr=None):
    return hello_frame(dev, nonce, fpr)


def hello_frame(dev, nonce, fpr):
    p = bytes([len(dev)]) + dev + nonce + (fpr or b"")
    return frame(HELLO, p, flags=1 if fpr else 0)


GW_FPR = bytes((0xf0 ^ (16 + j)) & 0xff for j in range(32))   # specs[1].fpr in fuzz_handshake.c
BYE_F, PING_F = frame(BYE), frame(PING, seq=7)

HS_SEEDS = {
    # the complete exchange for a known device, raw HELLO bytes, then DATA
    # without and with MAC, PING, ACKs, BYE
    "valid_session": hs(MF_4K, send(raw_hello()), h_auth(), h_data(), h_data(DF_MAC), h_data(DF_TS, plen=0),
                        send(PING_F), durable(), h_data(DF_MAC), durable(), send(BYE_F)),
    # the device with a fingerprint, scopes and require=mac
    "valid_fpr": hs(MF_4K, send(raw_hello(b"gw:7.a_b-c", fpr=GW_FPR)), h_auth(), h_data(DF_MAC, topic=TELEMETRY),
                    h_data(DF_SEAL, topic=LOGS), h_data(0, topic=TELEMETRY), h_data(DF_MAC, topic=9),
                    durable(), send(BYE_F)),
    "sealed": hs(MF_1K, h_hello(SEAL_ONLY), h_auth(), h_data(DF_SEAL, plen=40), h_data(DF_SEAL | DF_SPOIL),
                 h_data(DF_MAC), h_data(DF_SEAL | DF_MAC), h_data(DF_SEAL, plen=0), durable(), close()),
    "require_mac": hs(REQUIRE_MAC | MF_4K, h_hello(), h_auth(), h_data(), h_data(DF_MAC), h_data(DF_MAC | DF_SPOIL),
                      h_data(DF_SEAL), h_data(DF_MAC, DS_RETRY | 1), durable(), send(BYE_F)),
    "unknown_device": hs(MF_4K, h_hello(GHOST), h_auth(), h_data()),
    "disabled_device": hs(MF_4K, h_hello(OLD), h_auth(), h_data()),
    "wrong_proof": hs(MF_4K, h_hello(), h_auth(AV_FLIP | 3 << 5), h_data()),
    "other_key": hs(MF_4K, h_hello(), h_auth(AV_OTHER_KEY)),
    "fpr_missing": hs(MF_4K, h_hello(GW), h_auth()),
    "fpr_wrong": hs(MF_4K, h_hello(GW, HV_FPR | HV_BAD_FPR), h_auth()),
    "fpr_extra": hs(MF_4K, h_hello(SENSOR, HV_FPR), h_auth(), h_data(DF_MAC), send(BYE_F)),
    "auth_bad": hs(MF_4K, h_hello(), h_auth(AV_BAD_PCRC), h_hello(conn=1), h_auth(AV_LEN33, conn=1)),
    "data_before_auth": hs(MF_4K, h_data(), send(PING_F), h_hello(), h_data(), send(PING_F),
                           h_frame(WELCOME), h_auth(), h_data()),
    "second_hello": hs(MF_4K, h_hello(), h_hello(GW, HV_FPR), h_auth(), h_hello(), h_auth(AV_LAST_HELLO),
                       h_data(), send(BYE_F)),
    "auth_without_hello": hs(MF_4K, h_auth(), send(frame(AUTH, bytes(32))), h_hello(), h_auth(), h_auth()),
    "hello_then_auth_one_read": hs(MF_4K, h_hello(hold=True), h_auth(), h_data()),
    "split_frames": hs(MF_4K, send(raw_hello()[:20]), send(raw_hello()[20:50]), send(raw_hello()[50:]),
                       h_auth(split=17), h_data(DF_MAC, split=40), h_data(DF_SEAL, split=3), send(BYE_F[:30]),
                       send(BYE_F[30:])),
    "truncated": hs(MF_4K, h_hello(), h_auth(hold=True, split=50), close()),
    "truncated_hello": hs(MF_4K, send(raw_hello()[:40]), close(half=True)),
    "garbled_magic": hs(MF_4K, send(b"XX" + raw_hello()[2:])),
    "garbled_hcrc": hs(MF_4K, h_hello(), send(frame(AUTH, bytes(32))[:35] + b"\xff" + bytes(32))),
    "garbled_version": hs(MF_4K, send(frame(HELLO, b"", version=2))),
    "hello_bad_pcrc": hs(MF_4K, h_hello(SENSOR, HV_BAD_PCRC)),
    "hello_malformed": hs(MF_4K, h_frame(HELLO, 0, 0, b"\x05ab"), h_frame(HELLO, 0, 0, b"\x00" + bytes(16), conn=1),
                          h_frame(HELLO, 0, 0, b"\x03a b" + bytes(16), conn=2)),
    "too_large": hs(MF_256, h_hello(), h_auth(), h_frame(DATA, 0, 1, bytes(300)), h_data(plen=255)),
    "unexpected_types": hs(MF_4K, h_hello(), h_frame(CHALLENGE), h_auth(), h_frame(ACK, 0, 1),
                           h_frame(NACK, 0, 0, b"\x01\x00"), h_frame(PONG), h_frame(0), h_frame(200)),
    "takeover": hs(MF_4K, h_hello(), h_auth(), h_data(), h_hello(conn=1), h_auth(conn=1), h_data(conn=1),
                   h_data(), durable(), h_data(DF_MAC, conn=1)),
    "table_full": hs(MF_4K, h_hello(), h_auth(), h_hello(GW, HV_FPR, conn=1), h_auth(conn=1),
                     h_hello(SEAL_ONLY, conn=2), h_auth(conn=2)),
    "half_close_acks": hs(MF_4K, h_hello(), h_auth(), h_data(), h_data(), close(half=True), durable()),
    "retries": hs(MF_4K, h_hello(), h_auth(), h_data(), h_data(DS_GAP | 5), h_data(DS_RETRY | 2),
                  h_data(DS_ABS | 0), durable(), h_data(DS_RETRY | 0), durable(), close(),
                  h_hello(), h_auth(), h_data(DS_RETRY | 3), h_data()),
    "ring_full": hs(MF_256, h_hello(), h_auth(), *[h_data(plen=255, hold=True) for _ in range(70)],
                    h_data(), h_hello(conn=1), durable(), h_data(), durable()),
    "ndjson": hs(MF_4K, send(b'{"source":"s","data":"x"}\n')),
    "open_mode": hs(OPEN_MODE | MF_4K, h_hello(GHOST), h_auth(), h_data(), h_data(DF_MAC), h_data(DF_SEAL),
                    send(PING_F), durable(), h_hello(GHOST, conn=1), h_hello(SENSOR, conn=2),
                    h_hello(ID_X, conn=3), send(BYE_F)),
    "open_ndjson": hs(OPEN_MODE | MF_4K, send(b'{"source":"s"}\n')),
    # open mode with [auth] ndjson on: whole lines, a line split across reads, bad lines
    "open_ndjson_on": hs(OPEN_MODE | OPEN_NDJSON | MF_4K,
                         send(b'{"source":"s-1","data":"21.5","timestamp":"2024-05-01T12:00:00Z"}\n'),
                         send(b'{"source":"s-1","da'), send(b'ta":"x"}\n{"source":'), send(b'"s-2","data":1}\n'),
                         send(b'not json\n'), durable(), close()),
    # MAC / sealed frames shorter than their 16-byte MAC / tag
    "short_mac_seal": hs(MF_4K, h_hello(), h_auth(), h_frame(DATA, 2, 1, b"abc"), h_frame(DATA, 4, 2, b"abcdefgh"),
                         h_frame(DATA, 6, 3, bytes(20)), h_data(DF_MAC)),
    # a client that stops reading: replies queue in the server's output buffer
    "slow_reader": hs(MF_4K, h_hello(), h_auth(), mute(), *[send(PING_F, hold=True) for _ in range(60)],
                      send(PING_F), h_data(), durable(), mute(on=False), h_data(), durable(),
                      mute(), *[h_frame(9, hold=True) for _ in range(40)], send(BYE_F)),
}


def write_dir(name, seeds):
    out = os.path.join(HERE, "corpus", name)
    os.makedirs(out, exist_ok=True)
    for seed, blob in sorted(seeds.items()):
        with open(os.path.join(out, seed), "wb") as f:
            f.write(blob)
    print("wrote %d seeds to %s" % (len(seeds), os.path.relpath(out)))


def main():
    write_dir("fuzz_decoder", SEEDS)
    write_dir("fuzz_handshake", HS_SEEDS)


if __name__ == "__main__":
    main()
