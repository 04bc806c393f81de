"""UDP ingest: one DATA frame per datagram, a 64-wide replay window; in
keys mode every datagram carries a MAC keyed with the device key."""
import base64
import os
import signal
import socket
import subprocess
import time

import pytest

import mi_client
from mi_client import DATA, encode_frame, encode_udp
from conftest import wait_for
from test_auth import mi_keys, new_key


def dgram(device, seq, data=b"u", **kw):
    return encode_udp(device, seq, data, **kw)


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
    # no socket on the port: the kernel answers port unreachable, which a
    # connected UDP socket reports; nothing had to be given time to arrive
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.connect(("127.0.0.1", p.port))
    s.settimeout(10)
    s.send(dgram("udp-off", 1))
    with pytest.raises(ConnectionRefusedError):
        s.recv(64)
    s.close()
    assert p.counter("ingestd", "udp_datagrams") == 0


# ---- keys mode: a MAC keyed with the device key ----

EXAMPLE_KEY = bytes(range(32))
# docs/PROTOCOL.md, UDP: the keys-mode example datagram (tests/unit/test_frame.c checks it too)
EXAMPLE = bytes.fromhex(
    "4d 49 01 05 02 00 00 00 1d 00 00 00 4e cc b4 22"
    "01 00 00 00 00 00 00 00 08 07 06 05 04 03 02 01"
    "5b 52 23 6e 08 73 65 6e 73 6f 72 2d 37 32 31 2e"
    "35 0e 2a ef 8e 88 33 54 f3 e3 5f 02 c1 ed b4 88"
    "91")


def keys_pipeline(tmp_path, pipeline_factory, **over):
    """Keys mode with devices good, sensor-7 (the example key 00..1f), off
    (disabled) and sentinel (send_then_sentinel)."""
    kf = tmp_path / "keys"
    keys = {"good": new_key(kf, "good"), "off": new_key(kf, "off"), "sentinel": new_key(kf, "sentinel")}
    mi_keys(kf, "disable", "off")
    with open(kf, "a") as f:
        f.write(f"sensor-7 key={base64.b64encode(EXAMPLE_KEY).decode()} topics=*\n")
    keys["sensor-7"] = EXAMPLE_KEY
    p = pipeline_factory(auth__mode="keys", auth__keys_file=kf, **over).start()
    p.keys, p.keys_file = keys, kf
    return p


@pytest.fixture
def ukeyed(tmp_path, pipeline_factory):
    return keys_pipeline(tmp_path, pipeline_factory)


def counts(p):
    """(udp_stored, udp_dropped, udp_bad_mac, udp_replayed, drop table or {})"""
    st = p.stats()
    c = st["stages"]["ingestd"]["counters"]
    d = {k: v["packets"] for k, v in (st["drops"] or {}).items()}
    return {"stored": c["udp_stored"], "dropped": c["udp_dropped"], "bad_mac": c["udp_bad_mac"],
            "replayed": c["udp_replayed"], "datagrams": c["udp_datagrams"],
            **{"drop_" + k: v for k, v in d.items()}}


def delta(before, after):
    return {k: after[k] - before.get(k, 0) for k in after if after[k] != before.get(k, 0)}


_sentinel = [1000]


def send_then_sentinel(p, *datagrams):
    """Sends the datagrams, then a good one from device sentinel; loopback and
    ingestd keep order, so once the sentinel is stored every datagram before
    it has been judged.  Returns the counter changes the datagrams caused."""
    _sentinel[0] += 1
    before = counts(p)
    send(p, *datagrams, encode_udp("sentinel", _sentinel[0], b"sentinel", p.keys["sentinel"]))
    wait_for(lambda: _sentinel[0] in stored(p, "sentinel"), 10, "the sentinel datagram")
    d = delta(before, counts(p))
    # the sentinel's own counts
    for k, n in (("stored", 1), ("datagrams", 1)):
        d[k] = d.get(k, 0) - n
        if not d[k]:
            del d[k]
    return d


def test_keys_maced_datagram_is_stored_once_without_id_and_mac(ukeyed):
    key = ukeyed.keys["good"]
    d = send_then_sentinel(ukeyed, encode_udp("good", 1, b"reading one", key, topic=0, ts_ns=123456789))
    assert d == {"stored": 1, "datagrams": 1}, d
    recs = [r for r in ukeyed.dump() if r["device"] == "good" and r["seq"] == 1]
    assert len(recs) == 1
    assert recs[0]["len"] == len(b"reading one") and recs[0]["crc_ok"] and recs[0]["ts_ns"] == 123456789
    # a MACed datagram is the device's seq, as over TCP
    with ukeyed.client("good", key=key) as c:
        assert c.hello() >= 1


def test_keys_replayed_datagram_is_refused(ukeyed):
    good = encode_udp("good", 5, b"once", ukeyed.keys["good"])
    assert send_then_sentinel(ukeyed, good) == {"stored": 1, "datagrams": 1}
    d = send_then_sentinel(ukeyed, good, good)
    assert d == {"datagrams": 2, "dropped": 2, "replayed": 2, "drop_replay": 2}, d
    assert [r["seq"] for r in ukeyed.dump() if r["device"] == "good"].count(5) == 1


# with eBPF: tests/integration/test_filter.py
@pytest.mark.parametrize("mode", ["off", "classic"])
def test_keys_datagram_without_mac_or_sealed_is_dropped_without_ebpf(tmp_path, pipeline_factory, mode):
    p = keys_pipeline(tmp_path, pipeline_factory, filter__mode=mode)
    d = send_then_sentinel(p, encode_udp("good", 1, b"plain"),
                           encode_udp("good", 2, b"sealed", p.keys["good"], flags=mi_client.F_SEALED))
    if mode == "off":   # ingestd judges them, in the drop table only with eBPF
        assert d == {"datagrams": 2, "dropped": 2}, d
        log = p.log.read_text(errors="replace")
        assert "dropped: [auth] mode = keys: UDP datagram without a MAC (flags bit 1)" in log
        assert "dropped: [auth] mode = keys: sealed UDP datagrams are not supported" in log
    else:               # the classic filter drops them before ingestd
        assert p.stats()["filter_mode"] == "classic BPF"
        assert d == {}, d
    assert not stored(p, "good")


def test_keys_flipped_mac_data_or_header_byte_is_a_bad_mac(ukeyed):
    key = ukeyed.keys["good"]
    good = encode_udp("good", 7, b"payload", key)
    mac = good[-16:]
    forged = [
        encode_udp("good", 7, b"payload", key, mac=mac[:3] + bytes([mac[3] ^ 1]) + mac[4:]),  # MAC byte
        encode_udp("good", 7, b"paylOad", key, mac=mac),                                     # data byte
        encode_udp("good", 7, b"payload", key, topic=1, mac=mac),                            # header field
        encode_udp("good", 8, b"payload", key, mac=mac),                                     # seq
    ]
    d = send_then_sentinel(ukeyed, *forged)
    n = len(forged)
    assert d == {"datagrams": n, "dropped": n, "bad_mac": n, "drop_bad_mac": n}, d
    assert not stored(ukeyed, "good")
    assert "dropped: device 'good': MAC does not verify" in ukeyed.log.read_text(errors="replace")
    # the forgeries took no seq: the genuine datagram still goes in
    assert send_then_sentinel(ukeyed, good) == {"stored": 1, "datagrams": 1}
    assert 7 in stored(ukeyed, "good")


def test_keys_forged_datagram_does_not_move_the_replay_window(ukeyed):
    key = ukeyed.keys["good"]
    assert send_then_sentinel(ukeyed, encode_udp("good", 10, b"real", key)) == {"stored": 1, "datagrams": 1}
    # forged seqs far ahead and next in line: had they moved the window, the
    # real 5 (late, inside the window) and 11 would be refused
    d = send_then_sentinel(ukeyed, encode_udp("good", 1 << 40, b"x", key, mac=bytes(16)),
                           encode_udp("good", 11, b"x", key, mac=bytes(16)))
    assert d == {"datagrams": 2, "dropped": 2, "bad_mac": 2, "drop_bad_mac": 2}, d
    d = send_then_sentinel(ukeyed, encode_udp("good", 5, b"late", key), encode_udp("good", 11, b"next", key))
    assert d == {"stored": 2, "datagrams": 2}, d
    assert stored(ukeyed, "good") == [5, 10, 11]


def test_keys_unknown_and_disabled_devices_are_dropped(ukeyed):
    d = send_then_sentinel(ukeyed, encode_udp("nobody", 1, b"x", os.urandom(32)),
                           encode_udp("off", 1, b"x", ukeyed.keys["off"]),
                           encode_udp("off", 2, b"x", os.urandom(32)))
    assert d == {"datagrams": 3, "dropped": 3, "drop_auth": 3}, d
    assert not stored(ukeyed, "nobody") and not stored(ukeyed, "off")
    # refused before a device-table slot was taken
    ids = [x["id"] for x in ukeyed.stats()["devices"]]
    assert "nobody" not in ids and "off" not in ids
    log = ukeyed.log.read_text(errors="replace")
    assert "device 'nobody': unknown device" in log and "device 'off': device disabled" in log


def test_keys_datagram_too_short_for_its_mac_is_malformed(ukeyed):
    key = ukeyed.keys["good"]
    short = encode_frame(DATA, b"\x04good" + bytes(15), 9, flags=mi_client.F_MAC)
    d = send_then_sentinel(ukeyed, short)
    assert d == {"datagrams": 1, "dropped": 1, "drop_malformed": 1}, d
    # an empty data part is fine: id and MAC only
    assert send_then_sentinel(ukeyed, encode_udp("good", 9, b"", key)) == {"stored": 1, "datagrams": 1}
    assert [r["len"] for r in ukeyed.dump() if r["device"] == "good" and r["seq"] == 9] == [0]


def test_keys_old_key_after_rotation_and_restart_is_dropped(ukeyed):
    old = ukeyed.keys["good"]
    assert send_then_sentinel(ukeyed, encode_udp("good", 1, b"before", old)) == {"stored": 1, "datagrams": 1}
    new = base64.b64decode(mi_keys(ukeyed.keys_file, "rotate", "good"))
    pid = ukeyed.kill("ingestd", signal.SIGKILL)
    ukeyed.wait_restarted("ingestd", pid)
    ukeyed.wait_listening()
    d = send_then_sentinel(ukeyed, encode_udp("good", 2, b"old key", old))
    assert d == {"datagrams": 1, "dropped": 1, "bad_mac": 1, "drop_bad_mac": 1}, d
    assert send_then_sentinel(ukeyed, encode_udp("good", 3, b"new key", new)) == {"stored": 1, "datagrams": 1}
    assert 2 not in stored(ukeyed, "good") and {1, 3} <= set(stored(ukeyed, "good"))


def test_keys_rotation_applies_to_udp_on_sighup(ukeyed):
    old = ukeyed.keys["good"]
    new = base64.b64decode(mi_keys(ukeyed.keys_file, "rotate", "good"))
    reloads = ukeyed.counter("ingestd", "keys_reloads")
    ukeyed.kill("ingestd", signal.SIGHUP)
    wait_for(lambda: ukeyed.counter("ingestd", "keys_reloads") > reloads, 10, "the keys file reload")
    d = send_then_sentinel(ukeyed, encode_udp("good", 1, b"old key", old))
    assert d == {"datagrams": 1, "dropped": 1, "bad_mac": 1, "drop_bad_mac": 1}, d
    assert send_then_sentinel(ukeyed, encode_udp("good", 2, b"new key", new)) == {"stored": 1, "datagrams": 1}
    assert stored(ukeyed, "good") == [2]


def test_keys_protocol_example_datagram_is_accepted(ukeyed):
    assert encode_udp("sensor-7", 1, b"21.5", EXAMPLE_KEY, ts_ns=0x0102030405060708) == EXAMPLE
    assert send_then_sentinel(ukeyed, EXAMPLE) == {"stored": 1, "datagrams": 1}
    recs = [r for r in ukeyed.dump() if r["device"] == "sensor-7"]
    assert [(r["seq"], r["topic"], r["ts_ns"], r["len"], r["crc_ok"]) for r in recs] == \
        [(1, 0, 0x0102030405060708, 4, True)]
    ukeyed.wait_sinks_caught_up()
    assert [e["payload"] for e in ukeyed.disk_entries() if e["device"] == "sensor-7"] == [b"21.5"]


def cpu_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        v = f.read().rsplit(")", 1)[1].split()
    return int(v[11]) + int(v[12])   # utime + stime


def udp_queued(p):
    """Bytes waiting unread in ingestd's UDP socket."""
    out = subprocess.run(["ss", "-uanH", f"( sport = :{p.port} )"], capture_output=True, text=True).stdout.split()
    return int(out[1]) if len(out) > 1 else 0


def test_udp_works_on_the_smallest_ring_and_waits_for_room_without_spinning(pipeline_factory):
    # a 1 MiB ring has no room for 32 max-size datagrams at once: ingestd
    # reads as many as fit, and when none fits it stops polling the socket
    # until flusherd frees space (a level-triggered socket left unread
    # would wake epoll at once, forever)
    p = pipeline_factory(shm__ring_bytes="1M", wal__commit_bytes="256K").start()
    send(p, *[dgram("udp-small", s, b"r%d" % s) for s in range(1, 4)])
    settle(p, 3)
    assert stored(p, "udp-small") == [1, 2, 3]

    os.kill(p.pid("flusherd"), signal.SIGSTOP)
    try:
        big = b"x" * 60000
        # fill the ring over TCP (clients stall, nothing is lost), then queue
        # datagrams behind it
        filler = p.send_async("udp-filler", 40, size=60000)
        wait_for(lambda: p.counter("ingestd", "ring_full_stalls") > 0, 10, "the ring to fill")
        # flusherd is stopped: nothing frees space, so TCP stalls once and
        # the next count is ingestd taking the UDP socket out of its poll
        stalls = p.counter("ingestd", "ring_full_stalls")
        send(p, *[dgram("udp-late", s, big) for s in range(1, 6)])
        wait_for(lambda: p.counter("ingestd", "ring_full_stalls") > stalls and udp_queued(p) > 0, 10,
                 "ingestd to stop polling the UDP socket, datagrams left in it")
        ing = p.pid("ingestd")
        t0 = cpu_ticks(ing)
        time.sleep(1.0)
        assert cpu_ticks(ing) - t0 < 20, "ingestd spins while the ring is full"
    finally:
        os.kill(p.pid("flusherd"), signal.SIGCONT)
    out, err = filler.communicate(timeout=60)
    assert filler.returncode == 0, err
    settle(p, 3 + 5)
    assert stored(p, "udp-late") == [1, 2, 3, 4, 5]
