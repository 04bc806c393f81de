"""Per-frame MACs on TCP DATA in keys mode (flags bit 1).

The last 16 bytes of a MAC'd payload are keyed BLAKE2b-128 (session key)
over header bytes 0..11 and 16..31 then the data; the WAL keeps the data
only.  A MAC that does not verify is NACK 5, the frame is not stored and
the connection stays usable.
"""
import base64
import struct
import zlib

import pytest

import mi_client
from conftest import BIN
from test_auth import keyed, mi_keys, new_key, stored  # noqa: F401  (fixture)


def nack_of(c):
    f = c.read_frame(5)
    assert f is not None and f.type == mi_client.NACK, f
    return f.seq, mi_client.parse_nack(f.payload)


def test_maced_frames_are_acked_and_stored_without_the_mac(keyed):
    data = {s: b"mac-%d-" % s * s for s in range(1, 11)}
    with keyed.client("good", key=keyed.keys["good"]) as c:
        c.hello()
        acked, nacks = c.send_and_wait_acks(sorted(data.items()), mac=True)
        assert acked == 10 and not nacks
    recs = stored(keyed, "good")
    assert sorted(r["seq"] for r in recs) == list(range(1, 11))
    for r in recs:
        assert r["len"] == len(data[r["seq"]]) and r["crc_ok"], r
    keyed.wait_sinks_caught_up()
    disk = {e["seq"]: e["payload"] for e in keyed.disk_entries() if e["device"] == "good"}
    assert disk == data


def test_empty_data_with_a_mac_is_fine(keyed):
    with keyed.client("good", key=keyed.keys["good"]) as c:
        c.hello()
        assert c.send_and_wait_acks([(1, b"")], mac=True) == (1, {})
    assert [r["len"] for r in stored(keyed, "good")] == [0]


def test_flipped_mac_byte_is_nack_5_and_the_connection_goes_on(keyed):
    with keyed.client("good", key=keyed.keys["good"]) as c:
        c.hello()
        fr = bytearray(mi_client.encode_data_mac(c.session_key, 1, b"hello"))
        fr[-1] ^= 1
        # keep pcrc right so that the MAC check is what refuses it
        pl = bytes(fr[36:])
        fr = mi_client.encode_frame(mi_client.DATA, pl, 1, flags=mi_client.F_MAC)
        c.send_raw(fr)
        assert nack_of(c) == (1, (mi_client.NACK_AUTH_FAILED, "MAC does not verify"))
        # still usable: the same seq, MACed right, is stored
        assert c.send_and_wait_acks([(1, b"hello")], mac=True) == (1, {})
    assert [r["seq"] for r in stored(keyed, "good")] == [1]
    assert keyed.drops()["bad_mac"] == 1


def test_flipped_payload_byte_with_recomputed_pcrc_is_nack_5(keyed):
    with keyed.client("good", key=keyed.keys["good"]) as c:
        c.hello()
        fr = mi_client.encode_data_mac(c.session_key, 1, b"payload")
        pl = bytearray(fr[36:])
        pl[0] ^= 0x20
        c.send_raw(mi_client.encode_frame(mi_client.DATA, bytes(pl), 1, flags=mi_client.F_MAC))
        assert nack_of(c) == (1, (mi_client.NACK_AUTH_FAILED, "MAC does not verify"))
        # a changed header field (topic/seq/ts) breaks the MAC too
        fr = bytearray(mi_client.encode_data_mac(c.session_key, 2, b"x", ts_ns=5))
        struct.pack_into("<Q", fr, 24, 6)
        struct.pack_into("<I", fr, 32, zlib.crc32(bytes(fr[:32])))
        c.send_raw(bytes(fr))
        assert nack_of(c) == (2, (mi_client.NACK_AUTH_FAILED, "MAC does not verify"))
        # the key of another session does not verify either
        c.send_raw(mi_client.encode_data_mac(bytes(32), 3, b"x"))
        assert nack_of(c) == (3, (mi_client.NACK_AUTH_FAILED, "MAC does not verify"))
        assert c.send_and_wait_acks([(4, b"ok")], mac=True) == (4, {})
    assert [r["seq"] for r in stored(keyed, "good")] == [4]
    assert keyed.drops()["bad_mac"] == 3


def test_bad_pcrc_is_still_nack_1_before_the_mac(keyed):
    with keyed.client("good", key=keyed.keys["good"]) as c:
        c.hello()
        c.send_raw(mi_client.encode_data_mac(c.session_key, 1, b"x", pcrc=1))
        assert nack_of(c)[1][0] == mi_client.NACK_CRC
    assert not stored(keyed, "good")


def test_mac_frame_shorter_than_the_mac_is_nack_8(keyed):
    with keyed.client("good", key=keyed.keys["good"]) as c:
        c.hello()
        c.send_raw(mi_client.encode_frame(mi_client.DATA, b"short", 1, flags=mi_client.F_MAC))
        seq, (code, reason) = nack_of(c)
        assert seq == 1 and code == mi_client.NACK_MALFORMED and "16-byte MAC" in reason
        assert c.send_and_wait_acks([(1, b"fine")], mac=True) == (1, {})
    assert [r["len"] for r in stored(keyed, "good")] == [4]


def test_without_require_mac_unmaced_frames_are_still_accepted(keyed):
    with keyed.client("good", key=keyed.keys["good"]) as c:
        c.hello()
        acked, nacks = c.send_and_wait_acks([(1, b"plain"), {"seq": 2, "payload": b"maced", "mac": True}])
        assert acked == 2 and not nacks
    assert sorted((r["seq"], r["len"]) for r in stored(keyed, "good")) == [(1, 5), (2, 5)]


def test_mac_flag_in_open_mode_is_nack_8(pipeline):
    with pipeline.client("dev") as c:
        c.hello()
        c.send_raw(mi_client.encode_data_mac(bytes(32), 1, b"x"))
        seq, (code, reason) = nack_of(c)
        assert (seq, code) == (1, mi_client.NACK_MALFORMED) and "keys" in reason


@pytest.fixture
def strict(tmp_path, pipeline_factory):
    kf = tmp_path / "keys"
    keys = {"good": new_key(kf, "good")}
    p = pipeline_factory(auth__mode="keys", auth__keys_file=kf, auth__require_mac="true").start()
    p.keys, p.keys_file = keys, kf
    return p


def test_require_mac_refuses_frames_without_one(strict):
    with strict.client("good", key=strict.keys["good"]) as c:
        c.hello()
        c.send_data(1, b"plain")
        assert nack_of(c) == (1, (mi_client.NACK_AUTH_FAILED, "MAC required"))
        assert c.send_and_wait_acks([(1, b"maced")], mac=True) == (1, {})
    assert [(r["seq"], r["len"]) for r in stored(strict, "good")] == [(1, 5)]


def test_mi_send_with_mac_end_to_end(strict):
    b64 = base64.b64encode(strict.keys["good"]).decode()
    r = strict.send("good", 10, timeout=5, extra=("--key", b64))
    assert r.returncode == 3, r.stderr      # every frame NACKed: MAC required
    r = strict.send("good", 500, size=50, extra=("--key", b64, "--mac"))
    assert r.returncode == 0, r.stderr
    recs = stored(strict, "good")
    assert sorted(x["seq"] for x in recs) == list(range(1, 501))
    assert all(x["len"] == 50 and x["crc_ok"] for x in recs)
    strict.wait_sinks_caught_up()
    for e in strict.disk_entries():
        assert e["payload"] == mi_client.gen_payload("good", e["seq"], 50)
    r = strict.run(BIN / "mi-send", "-p", strict.port, "-d", "good", "--count", 1, "--mac")
    assert r.returncode == 2 and "--mac needs" in r.stderr


def test_mi_send_mac_survives_a_reconnect(strict):
    """Frames resent after a reconnect are MACed with the new session key."""
    import signal
    b64 = base64.b64encode(strict.keys["good"]).decode()
    # flusherd stopped: no ACKs, so mi-send cannot finish before the kill
    # (it sends 20000 frames in well under 0.1 s otherwise)
    strict.kill("flusherd", signal.SIGSTOP)
    try:
        p = strict.send_async("good", 20000, size=200, extra=("--key", b64, "--mac"))
        from conftest import wait_for
        wait_for(lambda: strict.counter("ingestd", "frames_stored") > 2000, 20, "some frames stored")
        pid = strict.kill("ingestd", signal.SIGKILL)
    finally:
        strict.kill("flusherd", signal.SIGCONT)
    strict.wait_restarted("ingestd", pid)
    out, err = p.communicate(timeout=90)
    assert p.returncode == 0, err
    assert " reconnects 0" not in err, err
    recs = stored(strict, "good")
    assert sorted(r["seq"] for r in recs) == list(range(1, 20001))
    assert keyed_drops_ok(strict)


def keyed_drops_ok(p):
    """No frame failed its MAC (resent frames carry the new session's MAC)."""
    return (p.drops() or {}).get("bad_mac", 0) == 0
