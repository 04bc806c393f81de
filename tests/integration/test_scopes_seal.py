"""Keys mode beyond the handshake: topic scopes (NACK 4), sealed frames
(XChaCha20-Poly1305, flags bit 2), per-device require=mac|seal, and a
SIGHUP reload of the keys file that keeps unchanged devices' sessions.
"""
import os
import signal

import pytest

import mi_client
from conftest import BIN, assert_connect_dropped, wait_for
from test_auth import mi_keys, new_key, stored

TOPICS = {"topics__telemetry": 1, "topics__logs": 2, "topics__images": 7}


@pytest.fixture
def scoped(tmp_path, pipeline_factory):
    """Keys mode with [topics]; devices: tel (telemetry only), any (*),
    macd (require=mac), seald (require=seal)."""
    kf = tmp_path / "keys"
    keys = {"tel": new_key(kf, "tel", "--topics", "telemetry"),
            "any": new_key(kf, "any"),
            "macd": new_key(kf, "macd", "--require", "mac"),
            "seald": new_key(kf, "seald", "--require", "seal", "--topics", "Logs,default"),
            "sentinel": new_key(kf, "sentinel")}
    p = pipeline_factory(auth__mode="keys", auth__keys_file=kf, **TOPICS).start()
    p.keys, p.keys_file = keys, kf
    return p


def nack(c):
    f = c.read_frame(5)
    assert f is not None and f.type == mi_client.NACK, f
    return f.seq, mi_client.parse_nack(f.payload)


def test_topic_outside_the_scopes_is_nack_4_and_not_stored(scoped):
    with scoped.client("tel", key=scoped.keys["tel"]) as c:
        c.hello()
        acked, nacks = c.send_and_wait_acks([{"seq": 1, "payload": b"in", "topic": 1},
                                             {"seq": 2, "payload": b"out", "topic": 2},
                                             {"seq": 3, "payload": b"default", "topic": 0},
                                             {"seq": 4, "payload": b"in again", "topic": 1}])
        assert acked == 4
        assert set(nacks) == {2, 3}
        assert nacks[2] == (mi_client.NACK_TOPIC, "topic 2 is not in the scopes of device 'tel'")
    assert sorted((r["seq"], r["topic"]) for r in stored(scoped, "tel")) == [(1, 1), (4, 1)]
    assert scoped.counter("ingestd", "nack_topic_not_allowed") == 2
    with scoped.client("any", key=scoped.keys["any"]) as c:   # topics=*: any id, named or not
        c.hello()
        assert c.send_and_wait_acks([{"seq": 1, "payload": b"x", "topic": 999}]) == (1, {})


def test_topic_names_are_case_insensitive_and_default_is_topic_0(scoped):
    with scoped.client("seald", key=scoped.keys["seald"]) as c:   # topics=Logs,default
        c.hello()
        acked, nacks = c.send_and_wait_acks([{"seq": 1, "payload": b"a", "topic": 2},
                                             {"seq": 2, "payload": b"b", "topic": 0},
                                             {"seq": 3, "payload": b"c", "topic": 1}], seal=True)
        assert acked == 2 and list(nacks) == [3] and nacks[3][0] == mi_client.NACK_TOPIC


def test_keys_file_topic_missing_from_the_config_stops_ingestd(tmp_path, pipeline_factory):
    kf = tmp_path / "keys"
    new_key(kf, "d", "--topics", "telemetry,nosuch")
    p = pipeline_factory(auth__mode="keys", auth__keys_file=kf, **TOPICS)
    r = p.run(BIN / "ingestd", "-c", p.ini, timeout=30)
    assert r.returncode == 2
    assert f"{kf}:" in r.stderr and "device 'd': topic 'nosuch' is not named in the config's [topics]" in r.stderr


@pytest.mark.parametrize("line,msg", [
    ("images = 0", "[topics] images = '0': a topic id is 1..65535 (0 is 'default', always)"),
    ("images = 70000", "[topics] images = '70000'"),
    ("bad/name = 3", "[topics] bad/name: a topic name is 1-32 bytes of [a-z0-9._-]"),
    ("other = 1", "[topics] other = 1: id already named 'telemetry'"),
])
def test_bad_topics_section_names_the_key(pipeline_factory, line, msg):
    p = pipeline_factory(topics__telemetry=1)
    p.ini.write_text(p.ini.read_text().replace("telemetry = 1", "telemetry = 1\n" + line))
    r = p.run(BIN / "ingestd", "-c", p.ini, timeout=30)
    assert r.returncode == 2 and msg in r.stderr, r.stderr


def test_sealed_frames_are_opened_and_stored_in_plaintext(scoped):
    data = {s: b"secret reading %d " % s * s for s in range(1, 21)}
    data[21] = b""
    with scoped.client("any", key=scoped.keys["any"]) as c:
        c.hello()
        wire = c.encode_data(1, data[1], seal=True)
        assert data[1] not in wire                      # encrypted on the wire
        acked, nacks = c.send_and_wait_acks(sorted(data.items()), seal=True)
        assert acked == 21 and not nacks
    recs = stored(scoped, "any")
    assert sorted(r["seq"] for r in recs) == list(range(1, 22))
    assert all(r["crc_ok"] and r["len"] == len(data[r["seq"]]) for r in recs)
    scoped.wait_sinks_caught_up()
    assert {e["seq"]: e["payload"] for e in scoped.disk_entries() if e["device"] == "any"} == data
    assert scoped.counter("ingestd", "sealed_opened") == 21


def tampered(c, seq, data, where):
    f = bytearray(c.encode_data(seq, data, seal=True))
    f[where] ^= 1
    # keep both CRCs right: the tag, not a checksum, must catch it
    f[12:16] = mi_client.zlib.crc32(bytes(f[36:])).to_bytes(4, "little")
    f[32:36] = mi_client.zlib.crc32(bytes(f[:32])).to_bytes(4, "little")
    return bytes(f)


# first and last ciphertext byte, last tag byte, topic, ts_ns
@pytest.mark.parametrize("where", [36, 36 + 9, 36 + 10 + 15, 6, 24])
def test_tampered_sealed_frame_is_nack_5_and_not_stored(scoped, where):
    with scoped.client("any", key=scoped.keys["any"]) as c:
        c.hello()
        raw = tampered(c, 1, b"0123456789", where)
        c.send_raw(raw)
        seq, (code, reason) = nack(c)
        assert (seq, code, reason) == (1, mi_client.NACK_AUTH_FAILED, "sealed payload does not verify")
        # the connection stays and the seq is still free
        assert c.send_and_wait_acks([(1, b"good")], seal=True) == (1, {})
    assert [r["seq"] for r in stored(scoped, "any")] == [1]
    assert scoped.counter("ingestd", "seal_failed") == 1


def test_sealed_frame_from_another_session_does_not_open(scoped):
    """The nonce and key are the session's: a captured sealed frame replayed
    on a new connection is refused, even at a fresh seq."""
    with scoped.client("any", key=scoped.keys["any"]) as c:
        c.hello()
        captured = c.encode_data(5, b"once", seal=True)
    with scoped.client("any", key=scoped.keys["any"]) as c:
        c.hello()
        c.send_raw(captured)
        assert nack(c)[1] == (mi_client.NACK_AUTH_FAILED, "sealed payload does not verify")
    assert not stored(scoped, "any")


def test_sealed_with_mac_bit_or_too_short_is_malformed(scoped):
    with scoped.client("any", key=scoped.keys["any"]) as c:
        c.hello()
        c.send_raw(c.encode_data(1, b"x", seal=True, flags=mi_client.F_MAC))
        assert nack(c)[1] == (mi_client.NACK_MALFORMED, "a sealed frame carries no MAC: its tag authenticates it")
        c.send_frame(mi_client.DATA, b"short", seq=1, flags=mi_client.F_SEALED)
        assert nack(c)[1] == (mi_client.NACK_MALFORMED, "sealed frame shorter than its 16-byte tag")
    assert not stored(scoped, "any")


def test_sealed_in_open_mode_is_malformed(pipeline):
    with pipeline.client("o") as c:
        c.hello()
        c.send_frame(mi_client.DATA, bytes(40), seq=1, flags=mi_client.F_SEALED)
        assert nack(c)[1] == (mi_client.NACK_MALFORMED, "MAC and sealed frames need [auth] mode = keys")


def test_require_mac_and_require_seal_per_device(scoped):
    with scoped.client("macd", key=scoped.keys["macd"]) as c:
        c.hello()
        acked, nacks = c.send_and_wait_acks([{"seq": 1, "payload": b"plain"},
                                             {"seq": 2, "payload": b"mac", "mac": True},
                                             {"seq": 3, "payload": b"sealed", "seal": True}])
        assert acked == 3 and nacks == {1: (mi_client.NACK_AUTH_FAILED, "MAC required")}
    with scoped.client("seald", key=scoped.keys["seald"]) as c:
        c.hello()
        acked, nacks = c.send_and_wait_acks([{"seq": 1, "payload": b"plain"},
                                             {"seq": 2, "payload": b"mac", "mac": True},
                                             {"seq": 3, "payload": b"sealed", "seal": True}])
        want = (mi_client.NACK_AUTH_FAILED, "sealed frames required for this device")
        assert acked == 3 and nacks == {1: want, 2: want}
    with scoped.client("any", key=scoped.keys["any"]) as c:   # no requirement
        c.hello()
        assert c.send_and_wait_acks([(1, b"plain")]) == (1, {})
    assert [r["seq"] for r in stored(scoped, "macd")] == [2, 3]
    assert [r["seq"] for r in stored(scoped, "seald")] == [3]


def hup(p):
    """Through the supervisor, as an operator would."""
    n = p.counter("ingestd", "keys_reloads")
    os.kill(p.proc.pid, signal.SIGHUP)
    wait_for(lambda: p.counter("ingestd", "keys_reloads") > n, 10, "the keys reload")


def test_sighup_reload_closes_removed_disabled_rotated_and_keeps_the_rest(scoped):
    kf = scoped.keys_file
    live, first = {}, {"tel": {"topic": 1}, "any": {}, "macd": {"mac": True}, "seald": {"seal": True, "topic": 2}}
    for d, kw in first.items():
        live[d] = scoped.client(d, key=scoped.keys[d]).__enter__()
        live[d].hello()
        assert live[d].send_and_wait_acks([{"seq": 1, "payload": b"before", **kw}]) == (1, {})
    mi_keys(kf, "remove", "tel")
    mi_keys(kf, "disable", "macd")
    mi_keys(kf, "rotate", "seald")
    mi_keys(kf, "set", "any", "--topics", "logs")       # changed scopes: session kept, new scopes apply
    hup(scoped)
    for d in ("tel", "macd", "seald"):
        with pytest.raises(mi_client.ConnectionClosed):
            while True:
                live[d].read_frame(5)
    assert scoped.counter("ingestd", "reload_closed") == 3
    c = live["any"]
    acked, nacks = c.send_and_wait_acks([{"seq": 2, "payload": b"logs", "topic": 2},
                                         {"seq": 3, "payload": b"tel", "topic": 1}])
    assert acked == 2 and list(nacks) == [3] and nacks[3][0] == mi_client.NACK_TOPIC
    for x in live.values():
        x.close()
    # the removed device cannot come back; the rotated one needs its new key
    with scoped.client("tel", key=scoped.keys["tel"]) as c2:
        with pytest.raises(mi_client.NackError):
            c2.hello()
    log = scoped.log.read_text()
    assert "SIGHUP: reloaded" in log and "1 sessions kept, 3 closed" in log


def test_sighup_with_a_broken_keys_file_keeps_the_old_registry(scoped):
    with scoped.client("any", key=scoped.keys["any"]) as c:
        c.hello()
        scoped.keys_file.write_text(scoped.keys_file.read_text() + "broken line here\n")
        os.kill(scoped.pid("ingestd"), signal.SIGHUP)
        wait_for(lambda: "keys file not reloaded, the old one stays in force" in scoped.log.read_text(), 10,
                 "the refused reload")
        line = [x for x in scoped.log.read_text().splitlines() if "keys file not reloaded" in x][0]
        assert f"{scoped.keys_file}:" in line and "broken" in line, line
        assert c.send_and_wait_acks([(1, b"still here")]) == (1, {})
    with scoped.client("tel", key=scoped.keys["tel"]) as c:   # old registry still admits devices
        c.hello()
    assert scoped.counter("ingestd", "keys_reloads") == 0


def test_failed_auths_from_one_address_ban_it_and_only_it(tmp_path, pipeline_factory):
    """The per-source limit on failed handshakes: [filter] ban_after wrong
    proofs within ban_window_ms and the address's SYNs are dropped."""
    import socket
    kf = tmp_path / "keys"
    key = new_key(kf, "dev")
    p = pipeline_factory(auth__mode="keys", auth__keys_file=kf, filter__ban_after=3,
                         filter__ban_window_ms=5000, filter__ban_ms=60000).start()
    for _ in range(3):
        with p.client("dev", key=bytes(32)) as c:
            with pytest.raises(mi_client.NackError):
                c.hello()
    wait_for(lambda: p.counter("ingestd", "bans") == 1, 5, "the ban")
    assert p.counter("ingestd", "auth_failed") == 3
    assert_connect_dropped(p.port)
    # the right key from another address still gets in
    c = mi_client.Client("127.0.0.1", p.port, "dev", key=key)
    c.sock = socket.socket()
    c.sock.bind(("127.0.0.2", 0))
    c.sock.settimeout(5)
    c.sock.connect(("127.0.0.1", p.port))
    c.hello()
    assert c.send_and_wait_acks([(1, b"ok")]) == (1, {})
    c.close()


def test_handshake_not_finished_in_time_is_closed_pings_or_not(tmp_path, pipeline_factory):
    import time
    kf = tmp_path / "keys"
    key = new_key(kf, "dev")
    p = pipeline_factory(auth__mode="keys", auth__keys_file=kf, server__handshake_timeout_ms=500).start()
    with p.client("dev", key=key) as done, p.client("dev2") as stuck:
        done.hello()
        stuck.send_frame(mi_client.HELLO, mi_client.hello_payload("dev2"))
        assert stuck.read_frame(5).type == mi_client.CHALLENGE
        t0 = time.monotonic()
        with pytest.raises(mi_client.ConnectionClosed):
            while time.monotonic() - t0 < 10:
                stuck.send_frame(mi_client.PING, seq=1)
                stuck.read_frame(0.1)
        assert time.monotonic() - t0 < 5
        assert p.counter("ingestd", "handshake_timeouts") == 1
        time.sleep(1.5)                                   # a session is not subject to it
        assert done.send_and_wait_acks([(1, b"still open")]) == (1, {})


def test_udp_keeps_to_scopes_and_refuses_devices_that_must_seal(scoped):
    """UDP in keys mode has the device-key MAC; scopes apply as on TCP, and a
    device with require=seal cannot use UDP at all (UDP is never sealed)."""
    from test_udp import send_then_sentinel
    dg = mi_client.encode_udp
    send_then_sentinel(scoped, dg("tel", 1, b"in scope", key=scoped.keys["tel"], topic=1),
                       dg("tel", 2, b"out of scope", key=scoped.keys["tel"], topic=2),
                       dg("seald", 1, b"not sealed", key=scoped.keys["seald"], topic=2),
                       dg("macd", 1, b"mac is enough", key=scoped.keys["macd"], topic=9))
    assert [r["seq"] for r in stored(scoped, "tel")] == [1]
    assert not stored(scoped, "seald")
    assert [r["seq"] for r in stored(scoped, "macd")] == [1]
    drops = scoped.drops()
    assert drops["topic"] == 1 and drops["auth"] >= 1
