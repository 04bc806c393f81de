"""UDP ingest: one DATA frame per datagram, a 64-wide replay window."""
import socket
import time

import mi_client
from mi_client import DATA, encode_frame
from conftest import wait_for


def dgram(device, seq, data=b"u", **kw):
    dev = device.encode()
    return encode_frame(DATA, bytes([len(dev)]) + dev + data, seq, **kw)


def send(p, *datagrams):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for d in datagrams:
        s.sendto(d, ("127.0.0.1", p.port))
    s.close()


def stored(p, device):
    return sorted(r["seq"] for r in p.dump() if r["device"] == device)


def settle(p, n):
    # datagrams the kernel filter drops are never read: count those too
    def seen():
        d = p.drops() or {}
        return p.counter("ingestd", "udp_datagrams") + sum(d.get(k, 0) for k in (
            "short", "bad_magic", "bad_version", "bad_type", "bad_length", "bad_hcrc", "too_large"))
    wait_for(lambda: seen() >= n, 10, f"{n} datagrams read or filtered")
    wait_for(lambda: p.stats()["rings"][0]["released"] == p.stats()["rings"][0]["head"], 10, "records durable")


def test_datagrams_are_stored_once_and_replays_refused(pipeline):
    send(pipeline, *[dgram("udp-a", s, b"reading %d" % s) for s in range(1, 11)])
    send(pipeline, dgram("udp-a", 5), dgram("udp-a", 10))          # replays
    settle(pipeline, 12)
    assert stored(pipeline, "udp-a") == list(range(1, 11))
    assert pipeline.counter("ingestd", "udp_replayed") == 2
    recs = [r for r in pipeline.dump() if r["device"] == "udp-a"]
    assert recs[0]["len"] == len(b"reading 1")


def test_out_of_order_within_the_window_is_taken_older_is_refused(pipeline):
    send(pipeline, dgram("udp-b", 100), dgram("udp-b", 98), dgram("udp-b", 99), dgram("udp-b", 37),
         dgram("udp-b", 36), dgram("udp-b", 98))
    settle(pipeline, 6)
    # 37 is 63 below 100: inside the window; 36 is 64 below: too old to tell
    assert stored(pipeline, "udp-b") == [37, 98, 99, 100]
    with pipeline.client("udp-b") as c:
        assert c.hello() == 100, "UDP seqs count as the device's seqs"


def test_malformed_datagrams_are_dropped_and_counted(pipeline):
    good = dgram("udp-c", 1)
    bad = [
        b"\x00" * 10,                                       # shorter than a header
        b"XX" + good[2:],                                   # bad magic
        good[:32] + b"\0\0\0\0" + good[36:],                # bad header crc
        good + b"extra",                                    # len does not match
        encode_frame(DATA, b"\x05udp-c" + b"x", 2, pcrc=1),  # payload crc
        encode_frame(DATA, b"\x00data", 3),                  # no device id
        encode_frame(mi_client.HELLO, b"\x05udp-c" + bytes(16)),  # not DATA
        dgram("udp-c", 4, flags=mi_client.F_MAC),           # MAC in open mode
        dgram("udp-c", 0),                                  # seq 0
    ]
    before = pipeline.drops()
    send(pipeline, *bad, good)
    wait_for(lambda: stored(pipeline, "udp-c") == [1], 10, "the good datagram")
    # dropped by the kernel filter or by ingestd: each once, in one table
    def dropped():
        d = pipeline.drops()
        if d is None:   # no drop table (no eBPF): ingestd's own count
            return pipeline.counter("ingestd", "udp_dropped")
        return sum(d.values()) - sum(before.values())
    wait_for(lambda: dropped() == len(bad), 10, f"{len(bad)} drops counted")


def test_udp_replay_is_refused_after_tcp_moved_the_device_on(pipeline):
    send(pipeline, dgram("mix", 10))
    settle(pipeline, 1)
    with pipeline.client("mix") as c:
        c.hello()
        acked, _ = c.send_and_wait_acks([(11, b"t"), (12, b"t")])
        assert acked == 12
    send(pipeline, dgram("mix", 10), dgram("mix", 11), dgram("mix", 13))
    settle(pipeline, 4)
    assert stored(pipeline, "mix") == [10, 11, 12, 13]


def test_udp_can_be_turned_off(pipeline_factory):
    p = pipeline_factory(server__udp_listen="off").start()
    send(p, dgram("udp-off", 1))
    time.sleep(0.3)
    assert p.counter("ingestd", "udp_datagrams") == 0
