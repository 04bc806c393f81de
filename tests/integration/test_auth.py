"""Keys mode: HELLO -> CHALLENGE -> AUTH -> WELCOME with mutual proofs.

Each refusal (wrong key, unknown or disabled device, fingerprint mismatch,
replayed AUTH) gets the same NACK 5 and a close, and nothing is stored.
"""
import base64
import os
import signal
import subprocess

import pytest

import mi_client
from conftest import BIN

FPR = bytes(range(32))


def mi_keys(path, *args):
    r = subprocess.run([str(BIN / "mi-keys"), "-f", str(path), *map(str, args)],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


def new_key(path, device, *extra):
    return base64.b64decode(mi_keys(path, "add", device, *extra))


@pytest.fixture
def keyed(tmp_path, pipeline_factory):
    """A keys-mode pipeline with devices good, fp (fingerprint) and off (disabled)."""
    kf = tmp_path / "keys"
    keys = {"good": new_key(kf, "good"), "fp": new_key(kf, "fp", "--fingerprint", FPR.hex()),
            "off": new_key(kf, "off")}
    mi_keys(kf, "disable", "off")
    p = pipeline_factory(auth__mode="keys", auth__keys_file=kf).start()
    p.keys, p.keys_file = keys, kf
    return p


def stored(p, device):
    return [r for r in p.dump() if r["device"] == device]


def expect_auth_failed(c, **kw):
    with pytest.raises(mi_client.NackError) as e:
        c.hello(**kw)
    assert e.value.code == mi_client.NACK_AUTH_FAILED, e.value
    assert e.value.reason == "authentication failed"
    with pytest.raises(mi_client.ConnectionClosed):
        c.read_frame(5)


def test_good_device_authenticates_sends_and_gets_acks(keyed):
    with keyed.client("good", key=keyed.keys["good"]) as c:
        assert c.hello() == 0          # server proof verified inside hello()
        assert c.session_key and len(c.session_key) == 32
        acked, nacks = c.send_and_wait_acks([(s, b"k%d" % s) for s in range(1, 21)])
        assert acked == 20 and not nacks
    with keyed.client("good", key=keyed.keys["good"]) as c:
        assert c.hello() == 20
    assert sorted(r["seq"] for r in stored(keyed, "good")) == list(range(1, 21))


def test_wrong_server_proof_is_detected_by_the_client():
    """A server that does not hold the key cannot forge WELCOME's proof."""
    import socket
    import threading
    ls = socket.socket()
    ls.bind(("127.0.0.1", 0))
    ls.listen(1)

    def fake():
        s, _ = ls.accept()
        dec = mi_client.Decoder()
        got = []
        while len(got) < 2:
            got += dec.feed(s.recv(4096))
            if len(got) == 1:
                s.sendall(mi_client.encode_frame(mi_client.CHALLENGE, os.urandom(16)))
        s.sendall(mi_client.encode_frame(mi_client.WELCOME, (65536).to_bytes(4, "little") + bytes(32)))
        s.recv(1)
        s.close()
    t = threading.Thread(target=fake, daemon=True)
    t.start()
    c = mi_client.Client("127.0.0.1", ls.getsockname()[1], "good", key=os.urandom(32))
    with pytest.raises(mi_client.AuthError):
        c.hello()
    c.close()
    t.join(5)
    ls.close()


def test_wrong_key_is_refused_and_nothing_stored(keyed):
    with keyed.client("good", key=os.urandom(32)) as c:
        expect_auth_failed(c)
    assert not stored(keyed, "good")


def test_unknown_device_gets_the_same_nack(keyed):
    with keyed.client("nobody", key=os.urandom(32)) as c:
        expect_auth_failed(c)
    assert not stored(keyed, "nobody")


def test_disabled_device_is_refused(keyed):
    with keyed.client("off", key=keyed.keys["off"]) as c:
        expect_auth_failed(c)


def test_fingerprint_mismatch_or_missing_is_refused(keyed):
    with keyed.client("fp", key=keyed.keys["fp"], fingerprint=bytes(32)) as c:
        expect_auth_failed(c)
    with keyed.client("fp", key=keyed.keys["fp"]) as c:
        expect_auth_failed(c)
    with keyed.client("fp", key=keyed.keys["fp"], fingerprint=FPR) as c:
        c.hello()
        assert c.send_and_wait_acks([(1, b"x")])[0] == 1
    # a device without fpr= may present any fingerprint
    with keyed.client("good", key=keyed.keys["good"], fingerprint=os.urandom(32)) as c:
        c.hello()
    assert keyed.counter("ingestd", "auth_failed") == 2
    assert keyed.counter("ingestd", "nack_auth_failed") == 2
    assert keyed.counter("ingestd", "auth_ok") == 2


def test_replayed_auth_from_a_recorded_session_is_refused(keyed):
    nonce = os.urandom(16)
    with keyed.client("good", key=keyed.keys["good"]) as c:
        c.hello(nonce=nonce)
        recorded = c.auth_frame
    with keyed.client("good") as c:
        # the attacker replays HELLO (same client nonce) and the recorded AUTH
        c.send_raw(mi_client.encode_frame(mi_client.HELLO, mi_client.hello_payload("good", nonce)))
        f = c.read_frame(5)
        assert f.type == mi_client.CHALLENGE and len(f.payload) == 16
        c.send_raw(recorded)
        f = c.read_frame(5)
        assert f.type == mi_client.NACK and mi_client.parse_nack(f.payload) == (5, "authentication failed")
        with pytest.raises(mi_client.ConnectionClosed):
            c.read_frame(5)


def test_data_before_auth_is_nacked_not_authenticated(keyed):
    with keyed.client("good") as c:
        c.send_data(1, b"early")
        f = c.read_frame(5)
        assert f.type == mi_client.NACK and mi_client.parse_nack(f.payload)[0] == mi_client.NACK_NOT_AUTH
        c.send_raw(mi_client.encode_frame(mi_client.HELLO, mi_client.hello_payload("good")))
        assert c.read_frame(5).type == mi_client.CHALLENGE
        c.send_data(1, b"still early")
        f = c.read_frame(5)
        assert f.type == mi_client.NACK
        assert mi_client.parse_nack(f.payload) == (mi_client.NACK_NOT_AUTH, "not authenticated: AUTH expected")
        # a second HELLO while the handshake is under way
        c.send_raw(mi_client.encode_frame(mi_client.HELLO, mi_client.hello_payload("good")))
        f = c.read_frame(5)
        assert f.type == mi_client.NACK and mi_client.parse_nack(f.payload)[0] == mi_client.NACK_MALFORMED
    assert not stored(keyed, "good")


def test_second_hello_in_a_session_is_nack_malformed(keyed):
    with keyed.client("good", key=keyed.keys["good"]) as c:
        c.hello()
        c.send_raw(mi_client.encode_frame(mi_client.HELLO, mi_client.hello_payload("good")))
        f = c.read_frame(5)
        assert f.type == mi_client.NACK and mi_client.parse_nack(f.payload)[0] == mi_client.NACK_MALFORMED


def test_ndjson_is_refused_in_keys_mode(keyed):
    import socket
    s = socket.create_connection(("127.0.0.1", keyed.port), timeout=5)
    s.sendall(b'{"source":"good","data":"x","timestamp":"2024-01-01T00:00:00Z"}\n')
    out = s.recv(4096)
    s.close()
    assert b"keys" in out and b"error" in out


def test_keys_never_reach_the_log(keyed):
    with keyed.client("good", key=os.urandom(32)) as c:
        expect_auth_failed(c)
    text = keyed.log.read_text(errors="replace")
    for k in keyed.keys.values():
        assert base64.b64encode(k).decode() not in text


def test_keys_file_mode_0644_stops_ingestd(tmp_path, pipeline_factory):
    kf = tmp_path / "keys"
    new_key(kf, "good")
    os.chmod(kf, 0o644)
    p = pipeline_factory(auth__mode="keys", auth__keys_file=kf)
    r = p.run(BIN / "ingestd", "-c", p.ini, timeout=30)
    assert r.returncode == 2
    assert "chmod 600" in r.stderr and str(kf) in r.stderr


def test_malformed_keys_file_stops_ingestd_naming_the_line(tmp_path, pipeline_factory):
    kf = tmp_path / "keys"
    kf.write_text("# ok\nbroken-line-without-key\n")
    os.chmod(kf, 0o600)
    p = pipeline_factory(auth__mode="keys", auth__keys_file=kf)
    r = p.run(BIN / "ingestd", "-c", p.ini, timeout=30)
    assert r.returncode == 2
    assert f"{kf}:2:" in r.stderr and "key=" in r.stderr, r.stderr


def test_key_rotation_then_restart(keyed):
    old = keyed.keys["good"]
    with keyed.client("good", key=old) as c:
        c.hello()
        assert c.send_and_wait_acks([(1, b"before")])[0] == 1
    new = base64.b64decode(mi_keys(keyed.keys_file, "rotate", "good"))
    pid = keyed.kill("ingestd", signal.SIGKILL)
    keyed.wait_restarted("ingestd", pid)
    keyed.wait_listening()
    with keyed.client("good", key=old) as c:
        expect_auth_failed(c)
    with keyed.client("good", key=new) as c:
        assert c.hello() == 1
        assert c.send_and_wait_acks([(2, b"after")])[0] == 2
    assert sorted(r["seq"] for r in stored(keyed, "good")) == [1, 2]


def test_mi_send_with_key_end_to_end(keyed):
    if "--key" not in keyed.run(BIN / "mi-send", "--help").stdout + keyed.run(BIN / "mi-send", "--help").stderr:
        pytest.skip("mi-send has no --key")
    b64 = base64.b64encode(keyed.keys["good"]).decode()
    r = keyed.send("good", 500, extra=("--key", b64))
    assert r.returncode == 0, r.stderr
    assert sorted(x["seq"] for x in stored(keyed, "good")) == list(range(1, 501))
    kf = keyed.tmp / "good.key"
    kf.write_text(base64.b64encode(os.urandom(32)).decode() + "\n")
    r = keyed.send("good", 10, timeout=5, extra=("--key-file", kf))
    assert r.returncode == 1                       # a connection failure (2 is bad usage)
    assert "authentication failed" in r.stderr
    r = keyed.send("good", 10, timeout=5)
    assert r.returncode == 1 and "key" in r.stderr, r.stderr
    kf.write_text(base64.b64encode(keyed.keys["fp"]).decode() + "\n")
    r = keyed.send("fp", 10, extra=("--key-file", kf, "--fingerprint", FPR.hex()))
    assert r.returncode == 0, r.stderr
    r = keyed.send("fp", 10, timeout=5, extra=("--key-file", kf))
    assert r.returncode == 1 and "authentication failed" in r.stderr
    assert len(stored(keyed, "good")) == 500 and len(stored(keyed, "fp")) == 10


def test_clients_with_a_key_refuse_an_open_mode_server(pipeline):
    """No CHALLENGE means no server proof: a keyed client must not go on."""
    with pipeline.client("good", key=os.urandom(32)) as c:
        with pytest.raises(mi_client.AuthError):
            c.hello()
    r = pipeline.send("good", 10, timeout=5, extra=("--key", base64.b64encode(os.urandom(32)).decode()))
    assert r.returncode == 1 and "WELCOME without CHALLENGE" in r.stderr, r.stderr
    assert not [x for x in pipeline.dump() if x["device"] == "good"]
