"""Connection limits: idle timeout, max connections, PING."""
import socket
import time

import mi_client
from conftest import wait_for


def test_idle_connections_are_closed_after_the_timeout(pipeline_factory):
    p = pipeline_factory(server__idle_timeout_ms=500).start()
    with p.client("idle") as c:
        # before the HELLO: the server's idle clock starts when it reads it,
        # so a client slow to get back from hello() cannot shorten dt
        t0 = time.monotonic()
        c.hello()
        try:
            while time.monotonic() - t0 < 5:
                c.read_frame(0.2)
            raise AssertionError("idle connection was not closed")
        except mi_client.ConnectionClosed:
            pass
        assert 0.4 < time.monotonic() - t0 < 3.5
    assert p.counter("ingestd", "conn_idle_closed") == 1


def test_connections_beyond_the_limit_are_refused_and_others_keep_working(pipeline_factory):
    p = pipeline_factory(server__max_connections=3).start()
    held = [p.client(f"lim-{i}").connect() for i in range(3)]
    for c in held:
        c.hello()
    extra = socket.create_connection(("127.0.0.1", p.port), timeout=5)
    assert extra.recv(1) == b"", "the 4th connection should be closed at once"
    extra.close()
    acked, _ = held[0].send_and_wait_acks([(1, b"still fine")])
    assert acked == 1
    for c in held:
        c.close()
    wait_for(lambda: p.counter("ingestd", "conn_open") == 0, 5, "connections to close")
    assert p.counter("ingestd", "conn_refused") == 1
    assert p.send("lim-after", 10).returncode == 0


def test_ping_is_answered_with_pong_carrying_the_same_seq(pipeline):
    with pipeline.client("pinger") as c:
        c.hello()
        c.send_frame(mi_client.PING, b"", 77)
        f = c.read_frame(5)
        assert f.type == mi_client.PONG and f.seq == 77


def test_half_closed_connection_still_gets_its_acks(pipeline):
    with pipeline.client("halfclose") as c:
        c.hello()
        c.send_raw(b"".join(mi_client.encode_frame(mi_client.DATA, b"d", s) for s in range(1, 101)))
        c.sock.shutdown(socket.SHUT_WR)
        acked = 0
        try:
            while acked < 100:
                f = c.read_frame(5)
                assert f is not None, "no ACK after shutdown(SHUT_WR)"
                acked = max(acked, f.seq)
        except mi_client.ConnectionClosed:
            pass
        assert acked == 100
