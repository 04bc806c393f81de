"""Bad input gets NACK or close, costs nothing else, and is never stored."""
import os
import random
import signal
import socket
import struct
import subprocess
import zlib

import pytest

import mi_client
from conftest import wait_for
from mi_client import DATA, HELLO, NACK, encode_frame, hello_payload


def closed(sock, timeout=5):
    """True once the server closed the connection (after any answer)."""
    sock.settimeout(timeout)
    try:
        while sock.recv(65536):
            pass
        return True
    except ConnectionResetError:
        return True
    except socket.timeout:
        return False


def raw(p):
    return socket.create_connection(("127.0.0.1", p.port), timeout=5)


def nack_code(c):
    f = c.read_frame(5)
    assert f is not None and f.type == NACK, f
    return mi_client.parse_nack(f.payload)[0]


def test_framing_errors_close_the_connection(pipeline):
    hello = encode_frame(HELLO, hello_payload("frm"))
    cases = {
        "random bytes": random.Random(7).randbytes(4096),
        "bad magic": encode_frame(HELLO, hello_payload("frm"), magic=b"XX"),
        "bad version": encode_frame(HELLO, hello_payload("frm"), version=2),
        "bad header crc": encode_frame(HELLO, hello_payload("frm"), hcrc=1),
        "len over the 16 MiB cap": encode_frame(DATA, b"", 1, length=(16 << 20) + 1),
        "garbage after a good HELLO": hello + b"\x00" * 64,
    }
    for what, blob in cases.items():
        s = raw(pipeline)
        s.sendall(blob)
        assert closed(s), what
        s.close()
    assert pipeline.counter("ingestd", "framing_errors") == len(cases)


def test_frame_level_errors_get_the_right_nack_and_keep_the_connection(pipeline):
    with pipeline.client("nacked") as c:
        c.send_data(1, b"before hello")
        assert nack_code(c) == 6
        c.hello()
        c.send_raw(encode_frame(DATA, b"payload", 1, pcrc=12345))
        assert nack_code(c) == 1
        c.send_data(2, b"x" * (64 * 1024 + 1))
        assert nack_code(c) == 2
        c.send_data(3, b"y", flags=mi_client.F_MAC)
        assert nack_code(c) == 8
        c.send_frame(mi_client.ACK, b"", 1)
        assert nack_code(c) == 8
        # the same connection still works
        acked, nacks = c.send_and_wait_acks([(4, b"good")])
        assert acked == 4 and not nacks
    recs = [r for r in pipeline.dump() if r["device"] == "nacked"]
    assert [r["seq"] for r in recs] == [4]


def test_bad_hellos_are_refused_with_nack_and_close(pipeline):
    cases = {
        "empty device id": hello_payload(""),
        "bad id charset": hello_payload("no spaces allowed"),
        "id too long": hello_payload("d" * 65),
        "short payload": b"\x05abc",
        "fingerprint flag without one": None,
    }
    for what, pl in cases.items():
        s = raw(pipeline)
        if pl is None:
            s.sendall(encode_frame(HELLO, hello_payload("fp"), flags=mi_client.F_FPR))
        else:
            s.sendall(encode_frame(HELLO, pl))
        d = mi_client.Decoder()
        s.settimeout(5)
        frames = []
        while not frames:
            chunk = s.recv(4096)
            assert chunk, what
            frames = d.feed(chunk)
        assert frames[0].type == NACK and mi_client.parse_nack(frames[0].payload)[0] == 8, what
        assert closed(s), what
        s.close()


def test_server_survives_a_storm_of_garbage_and_stores_none_of_it(pipeline):
    pid = pipeline.pid("ingestd")
    rnd = random.Random(42)
    for i in range(200):
        s = raw(pipeline)
        # half start like a frame, so the decoder gets deeper than the magic
        blob = rnd.randbytes(rnd.randint(1, 3000))
        if i % 2:
            h = struct.pack("<2sBBHHIIQQ", b"MI", 1, rnd.randint(0, 12), rnd.randint(0, 7), 0,
                            rnd.randint(0, 1 << 17), 0, rnd.randint(0, 5), 0)
            blob = h + struct.pack("<I", zlib.crc32(h)) + blob
        try:
            s.sendall(blob)
            s.shutdown(socket.SHUT_WR)
            closed(s, 2)
        except OSError:
            pass
        s.close()
    assert pipeline.pid("ingestd") == pid, "ingestd restarted: it crashed on input"
    assert pipeline.send("after-storm", 100).returncode == 0
    assert {r["device"] for r in pipeline.dump()} == {"after-storm"}
    assert pipeline.stats()["stages"]["ingestd"]["counters"]["conn_open"] == 0


def _rst(s):
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()


def _queues(port, side):
    """(Recv-Q, Send-Q) of the established loopback socket whose sport or
    dport is port, or None."""
    out = subprocess.run(["ss", "-tnH", "state", "established", f"( {side} = :{port} )"],
                         capture_output=True, text=True).stdout.split()
    return (int(out[0]), int(out[1])) if len(out) > 1 else None


def _proc_state(pid):
    return open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0]


def _closed_or_gone(p, pid):
    """ingestd has closed every connection, or is no longer that process."""
    return p.pid("ingestd", check=False) != pid or p.counter("ingestd", "conn_open") == 0


WELCOME_LEN = 36 + 4 + 32   # open mode: u32 max_frame + a zero proof


def test_peer_that_stops_reading_then_resets_does_not_crash_ingestd(pipeline):
    """Found by fuzz_handshake: output queued in the connection's buffer, then
    an RST: the failed flush closed (freed) the connection and the event loop
    went on using it.  Under ASan the use-after-free is a report, which fails
    the test; without, ingestd must still be the same process, serving."""
    pid = pipeline.pid("ingestd")
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect(("127.0.0.1", pipeline.port))
    hello = mi_client.encode_frame(mi_client.HELLO, mi_client.hello_payload("stopper"))
    s.sendall(hello)
    s.setblocking(False)
    pings = mi_client.encode_frame(mi_client.PING, seq=7) * 2000

    def pongs_held():
        """PINGs go on while the PONGs are never read.  Every PONG ingestd
        made (one per PING read, the same size) and that is not in the
        kernel's queues is in its own buffer.  Read in this order the
        estimate errs low: the queues only grow, and bytes moving between
        them while they are read are counted twice."""
        try:
            s.send(pings)
        except BlockingIOError:
            pass
        made = pipeline.counter("ingestd", "bytes_in") - len(hello) + WELCOME_LEN
        server, client = _queues(pipeline.port, "sport"), _queues(pipeline.port, "dport")
        return made - server[1] - client[0] > len(pings)
    wait_for(pongs_held, 30, "PONGs waiting in ingestd's own buffer", interval=0.01)
    _rst(s)
    wait_for(lambda: _closed_or_gone(pipeline, pid), 10, "ingestd to close the reset connection")
    assert pipeline.pid("ingestd") == pid
    assert pipeline.send("after-rst", 5).returncode == 0


@pytest.mark.parametrize("mode", ["ndjson_off", "keys"])
def test_refused_ndjson_from_a_peer_already_gone_does_not_crash_ingestd(pipeline_factory, tmp_path, mode):
    """Found by fuzz_handshake: the refusal's send failed (peer reset), which
    closed the connection, and the refusal then closed it a second time."""
    if mode == "keys":
        kf = tmp_path / "keys"
        kf.write_text("")
        os.chmod(kf, 0o600)
        p = pipeline_factory(auth__mode="keys", auth__keys_file=kf).start()
    else:
        p = pipeline_factory(auth__ndjson="false").start()
    pid = p.pid("ingestd")
    s = socket.socket()
    s.connect(("127.0.0.1", p.port))
    wait_for(lambda: p.counter("ingestd", "conn_open") == 1, 10, "ingestd to accept the connection")
    os.kill(pid, signal.SIGSTOP)                       # the line and the RST arrive before ingestd reads
    try:
        wait_for(lambda: _proc_state(pid) == "T", 10, "ingestd to stop")
        s.sendall(b'{"source":"s","data":"x"}\n')
        _rst(s)
        # the RST reached ingestd's socket: it is no longer established
        wait_for(lambda: _queues(p.port, "sport") is None, 10, "the RST to arrive")
    finally:
        os.kill(pid, signal.SIGCONT)
    wait_for(lambda: _closed_or_gone(p, pid), 10, "ingestd to close the reset connection")
    assert p.pid("ingestd") == pid
    p.wait_listening()
