"""Kernel filters (bpf/): UDP frame filter, banned sources on the TCP
listener, one drop table pinned under /sys/fs/bpf, classic-BPF fallback."""
import json
import os
import socket
import subprocess
import time

import pytest

import mi_client
from mi_client import DATA, encode_frame, encode_udp
from conftest import assert_connect_dropped, wait_for
from test_udp import keys_pipeline, send_then_sentinel

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="loading eBPF needs root")


def dgram(device, seq, data=b"u", **kw):
    return encode_udp(device, seq, data, **kw)


def bpftool_drops(p):
    """The pinned drop map as an operator reads it: bpftool -j, summed over CPUs."""
    out = subprocess.run(["bpftool", "-j", "map", "dump", "pinned", f"/sys/fs/bpf/module-ingest/{p.instance}/drops"],
                         capture_output=True, text=True, check=True).stdout
    totals = {}
    for ent in json.loads(out):
        key = ent.get("key")
        k = key if isinstance(key, int) else int.from_bytes(bytes(int(x, 16) for x in key), "little")
        vals = ent.get("values") or ent.get("formatted", {}).get("values")
        pk = 0
        for v in vals:
            val = v.get("value")
            if isinstance(val, dict):
                pk += val["packets"]
            else:   # raw bytes: u64 packets, u64 bytes
                pk += int.from_bytes(bytes(int(x, 16) for x in val[:8]), "little")
        totals[k] = pk
    return totals


def test_crafted_datagrams_are_dropped_in_the_kernel_by_reason(pipeline_factory):
    p = pipeline_factory(server__max_frame="4096").start()
    assert p.stats()["filter_mode"] == "eBPF"
    good = dgram("bpf-u", 1)
    cases = {
        "short": good[:20],
        "bad_magic": b"XX" + good[2:],
        "bad_version": encode_frame(DATA, b"\x05bpf-u", 2, version=2),
        "bad_type": encode_frame(mi_client.PING, b"", 3),
        "bad_length": good + b"x",
        "bad_hcrc": good[:32] + b"\x01\x02\x03\x04" + good[36:],
        "too_large": dgram("bpf-u", 4, b"z" * 4097),
    }
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for blob in cases.values():
        s.sendto(blob, ("127.0.0.1", p.port))
    # passed by the kernel: a good one, a max-size one, and a zero-length
    # payload (a valid header; ingestd finds no device id in it)
    s.sendto(good, ("127.0.0.1", p.port))
    s.sendto(dgram("bpf-u", 5, b"m" * (4096 - 6)), ("127.0.0.1", p.port))
    s.sendto(encode_frame(DATA, b"", 6), ("127.0.0.1", p.port))
    # the zero-length one was sent last and one socket keeps the order: once
    # ingestd has judged it, every datagram the filter let through was read
    wait_for(lambda: (p.drops() or {}).get("malformed", 0) >= 1, 10, "the last datagram judged")
    assert p.counter("ingestd", "udp_datagrams") == 3, "a filtered datagram reached ingestd"
    drops = p.drops()
    for reason in cases:
        assert drops[reason] == 1, (reason, drops)
    assert drops["malformed"] == 1   # the zero-length payload, found in user space
    # the same numbers through bpftool, as an operator reads them
    from_bpftool = bpftool_drops(p)
    assert sum(from_bpftool.values()) == len(cases)
    wait_for(lambda: sorted(r["seq"] for r in p.dump() if r["device"] == "bpf-u") == [1, 5], 10, "good ones stored")


def test_keys_mode_datagrams_without_mac_or_sealed_are_dropped_in_the_kernel(tmp_path, pipeline_factory):
    p = keys_pipeline(tmp_path, pipeline_factory)
    assert p.stats()["filter_mode"] == "eBPF"
    assert "flags & 0x6 == 0x2" in p.log.read_text(errors="replace")
    key = p.keys["good"]
    d = send_then_sentinel(p, dgram("good", 1, b"plain"),
                           dgram("good", 2, b"sealed", flags=mi_client.F_SEALED),
                           dgram("good", 3, b"both", key=key, flags=mi_client.F_SEALED))
    # never woke ingestd: no datagram read, three kernel drops
    assert d == {"drop_auth": 3}, d
    assert bpftool_drops(p)[14] == 3     # DROP_AUTH, from the kernel's own map
    # a MACed one with a wrong MAC passes the kernel; ingestd drops it
    d = send_then_sentinel(p, dgram("good", 4, b"forged", key=key, mac=bytes(16)))
    assert d == {"datagrams": 1, "dropped": 1, "bad_mac": 1, "drop_bad_mac": 1}, d
    assert not [r for r in p.dump() if r["device"] == "good"]


def test_source_banned_after_failed_handshakes_cannot_connect_until_expiry(pipeline_factory):
    p = pipeline_factory(filter__ban_after=3, filter__ban_window_ms=5000, filter__ban_ms=1500).start()
    for i in range(3):
        if i == 2:
            banned_at = time.monotonic()   # the ban starts after this
        s = socket.create_connection(("127.0.0.1", p.port), timeout=5)
        s.sendall(encode_frame(mi_client.HELLO, b"\x00" + bytes(16)))   # empty device id: refused
        s.settimeout(5)
        while s.recv(4096):
            pass
        s.close()
    assert p.counter("ingestd", "bans") == 1
    # banned: the SYN is dropped, the connect does not complete
    assert_connect_dropped(p.port)
    # another source is not affected
    other = socket.socket()
    other.bind(("127.0.0.2", 0))
    other.settimeout(2)
    other.connect(("127.0.0.1", p.port))
    other.close()
    assert p.drops()["banned"] >= 1
    # after the ban expires the source connects again, and not before
    def connects():
        try:
            socket.create_connection(("127.0.0.1", p.port), timeout=0.3).close()
            return True
        except OSError:
            return False
    wait_for(connects, 10, "the ban to expire", interval=0.1)
    assert time.monotonic() - banned_at >= 1.5, "the ban ended before ban_ms"
    assert p.send("after-ban", 10).returncode == 0


def test_without_cap_bpf_ingestd_falls_back_to_classic_bpf_and_works(pipeline_factory):
    p = pipeline_factory()
    p.start(wrap=["setpriv", "--bounding-set", "-bpf,-perfmon,-sys_admin", "--"])
    assert p.stats()["filter_mode"] == "classic BPF"
    log = p.log.read_text()
    assert "filters: eBPF unavailable (" in log and "filters: classic BPF on UDP" in log
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.sendto(b"XX" + dgram("cl", 1)[2:], ("127.0.0.1", p.port))   # dropped by the classic filter
    s.sendto(dgram("cl", 1), ("127.0.0.1", p.port))
    wait_for(lambda: [r["seq"] for r in p.dump() if r["device"] == "cl"] == [1], 10, "the good datagram")
    assert p.counter("ingestd", "udp_datagrams") == 1
    assert p.send("cl-tcp", 100).returncode == 0


def test_restarted_ingestd_keeps_the_drop_counters(pipeline):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for _ in range(5):
        s.sendto(b"XXgarbage-that-is-long-enough-to-be-a-header-or-more", ("127.0.0.1", pipeline.port))
    wait_for(lambda: pipeline.drops()["bad_magic"] == 5, 10, "5 drops")
    old = pipeline.kill("ingestd")
    pipeline.wait_restarted("ingestd", old)
    pipeline.wait_listening()
    assert pipeline.drops()["bad_magic"] == 5
    for _ in range(2):
        s.sendto(b"XXgarbage-that-is-long-enough-to-be-a-header-or-more", ("127.0.0.1", pipeline.port))
    wait_for(lambda: pipeline.drops()["bad_magic"] == 7, 10, "7 drops")


def test_ingestd_drops_to_the_configured_user_after_loading_the_filters(pipeline_factory):
    p = pipeline_factory(server__user="nobody", filter__ban_after=2, filter__ban_ms=60000).start()
    pid = p.pid("ingestd")
    uid = [l.split()[1] for l in open(f"/proc/{pid}/status") if l.startswith("Uid:")][0]
    assert uid == "65534", "ingestd should run as nobody"
    assert "running as nobody" in p.log.read_text()
    assert p.stats()["filter_mode"] == "eBPF"
    assert p.send("as-nobody", 100).returncode == 0
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.sendto(b"XX" + dgram("as-nobody", 1)[2:], ("127.0.0.1", p.port))
    wait_for(lambda: p.drops()["bad_magic"] == 1, 10, "the kernel drop")
    # user-space drops still reach the table (plain memory, no bpf() call)
    s.sendto(dgram("as-nobody", 50, pcrc=7), ("127.0.0.1", p.port))
    wait_for(lambda: p.drops()["bad_pcrc"] == 1, 10, "the user-space drop")
    # bans still bite: in the kernel if bpf() is allowed, else at accept
    for _ in range(2):
        c = socket.create_connection(("127.0.0.1", p.port), timeout=5)
        c.sendall(encode_frame(mi_client.HELLO, b"\x00" + bytes(16)))
        c.settimeout(5)
        while c.recv(4096):
            pass
        c.close()
    # the kernel completes a handshake without ingestd, so a connect that
    # does not complete in 0.5 s had its SYN dropped; one that completes
    # must be closed at accept (a timeout is not "closed": a slow ingestd
    # that had not banned would pass that way)
    c = socket.socket()
    c.settimeout(0.5)
    try:
        c.connect(("127.0.0.1", p.port))
    except OSError:                     # SYN dropped in the kernel
        c.close()
        assert p.drops()["banned"] >= 1
    else:                               # closed at accept
        c.settimeout(30)
        assert c.recv(1) == b""
        c.close()
        assert p.counter("ingestd", "banned_accepts") >= 1
