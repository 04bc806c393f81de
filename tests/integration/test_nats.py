"""The nats sink against real nats-server -js processes on loopback: one
node, a 3-node JetStream cluster with an R3 stream, and two ingest
pipelines into one stream; every record in the stream once, read back
through the JetStream API."""
import base64
import subprocess

import pytest

from conftest import Pipeline, wait_for
from natsjs import NatsServer, cluster, nkey_user, operator_setup, stream_messages

TOPICS = {"topics__telemetry": 1, "topics__logs": 2}


@pytest.fixture
def nats(tmp_path):
    s = NatsServer(tmp_path).start()
    yield s
    s.kill()


@pytest.fixture
def nats3(tmp_path):
    servers = cluster(tmp_path)
    yield servers
    for s in servers:
        s.kill()


def nats_pipeline(pipeline_factory, servers, **extra):
    keys = {"sink.js__type": "nats", "sink.js__servers": ",".join(s.url for s in servers),
            "sink.js__retry_max_ms": 1000, "sink.js__ack_wait_ms": 2000, **extra}
    return pipeline_factory(**{**TOPICS, "sinkd__sinks": "js", **keys})


def sinks(p):
    return {s["name"]: s for s in p.stats()["sinks"]}


def payload_of(d, seq):
    return bytes([0xff, d, seq & 0xff]) if seq % 5 == 0 else f"dev {d} seq {seq}".encode()


def send(p, devices, n):
    sent = {}
    for d in range(devices):
        dev, frames = f"d{d}", []
        for seq in range(1, n + 1):
            frames.append({"seq": seq, "payload": payload_of(d, seq), "topic": (1, 2, 0)[seq % 3]})
            sent[(dev, seq)] = frames[-1]
        with p.client(dev) as c:
            c.hello()
            _, nacks = c.send_and_wait_acks(frames)
        assert not nacks
    return sent


def wait_stream(port, n, stream="INGEST", timeout=60, auth=None):
    """Until the stream holds n messages; returns (info, messages)."""
    def done():
        info, msgs = stream_messages(port, stream, auth)
        return (info, msgs) if len(msgs) >= n else None
    return wait_for(done, timeout, f"{n} messages in stream {stream}", interval=0.5)


def assert_each_once(msgs, stored, log_ids):
    """Every stored record once in the stream (by device and seq), with the
    headers a consumer relies on."""
    seen = {}
    for m in msgs:
        h = m["headers"]
        dev = h.get("Ingest-Device") or base64.b64decode(h["Ingest-Device-B64"]).decode()
        k = (h["Nats-Msg-Id"].split(":")[0], dev, int(h["Ingest-Seq"]))
        assert k not in seen, f"{k} twice in the stream (seqs {seen[k]} and {m['seq']})"
        seen[k] = m["seq"]
        log_id, lsn = h["Nats-Msg-Id"].split(":")
        assert log_id in log_ids and int(lsn) == int(h["Ingest-Lsn"])
    want = {(log_ids[i], r["device"], r["seq"]) for i, dump in enumerate(stored) for r in dump}
    missing = want - set(seen)
    assert not missing, f"{len(missing)} records not in the stream, e.g. {sorted(missing)[:3]}"
    assert len(seen) == len(want), f"{len(seen) - len(want)} messages that no pipeline stored"


def test_every_record_is_one_message_with_its_headers(pipeline_factory, nats):
    p = nats_pipeline(pipeline_factory, [nats]).start()
    sent = send(p, 3, 120)
    p.wait_sinks_caught_up(timeout=60)
    log_id = p.stats()["log_id"]
    assert len(log_id) == 16
    info, msgs = wait_stream(nats.port, len(sent))
    cfg = info["config"]
    assert cfg["subjects"] == ["ingest.>"] and cfg["num_replicas"] == 1 and cfg["storage"] == "file"
    assert cfg["duplicate_window"] == 120 * 10**9
    dump = {(r["device"], r["seq"]): r for r in p.dump()}
    for m in msgs:
        h = m["headers"]
        k = (h["Ingest-Device"], int(h["Ingest-Seq"]))
        f, d = sent[k], dump[k]
        assert m["data"] == f["payload"]
        name = {1: "telemetry", 2: "logs"}.get(f["topic"])
        assert m["subject"] == f"ingest.{name or 0}.{k[0]}"
        assert int(h["Ingest-Topic"]) == f["topic"] and h.get("Ingest-Topic-Name") == name
        assert int(h["Ingest-Lsn"]) == d["lsn"] and int(h["Ingest-Device-Time"]) == d["ts_ns"]
        assert int(h["Ingest-Server-Time"]) >= d["ts_ns"] - 10**12
        assert h["Nats-Msg-Id"] == f"{log_id}:{d['lsn']}"
    assert_each_once(msgs, [p.dump()], [log_id])
    st = sinks(p)["js"]
    assert st["state"] == "running" and st["type"] == "nats" and st["records"] == len(sent)


def test_sinkd_killed_mid_stream_leaves_each_record_once_in_the_stream(pipeline_factory, nats):
    p = nats_pipeline(pipeline_factory, [nats]).start()
    st = [p.stream(f"m{i}", rate=3000, extra=("-t", i % 3)) for i in range(3)]
    for _ in range(3):
        st[0].wait_progress(3000)
        wait_for(lambda: sinks(p)["js"]["records"] > 0, 30, "publishes")
        old = p.kill("sinkd")
        p.wait_restarted("sinkd", old)
    for s in st:
        s.stop()
    p.wait_sinks_caught_up(timeout=120)
    dump = p.dump()
    _, msgs = wait_stream(nats.port, len(dump))
    assert_each_once(msgs, [dump], [p.stats()["log_id"]])


def test_a_cluster_server_killed_mid_stream_pauses_the_sink_and_loses_nothing(pipeline_factory, nats3):
    n1 = nats3[0]
    p = nats_pipeline(pipeline_factory, nats3, **{"sink.js__replicas": 3, "sink.js__stream": "R3"}).start()
    st = [p.stream(f"c{i}", rate=3000) for i in range(2)]
    st[0].wait_progress(3000)
    wait_for(lambda: sinks(p)["js"]["records"] > 0, 60, "publishes")
    n1.kill()                    # the server the sink is connected to (the first it is given)
    wait_for(lambda: "sink js: disconnected from" in p.log.read_text(), 30, "the sink to see its server go")
    st[0].wait_progress(3000)    # ingest goes on; the sink resumes through n2 or n3
    n1.start()
    for s in st:
        s.stop()
    p.wait_sinks_caught_up(timeout=120)
    dump = p.dump()
    info, msgs = wait_stream(nats3[1].port, len(dump), "R3")
    assert info["config"]["num_replicas"] == 3
    assert_each_once(msgs, [dump], [p.stats()["log_id"]])
    s = sinks(p)["js"]
    assert s["state"] == "running"


@pytest.fixture
def two_nodes(tmp_path):
    """Two pipelines, each in a directory of its own (config, log, data)."""
    made = []

    def make(name, **kw):
        d = tmp_path / name
        d.mkdir()
        made.append(Pipeline(d, **kw))
        return made[-1]
    yield make
    for p in made:
        p.close()


def test_two_pipelines_into_one_cluster_stream_hold_the_union_each_once(two_nodes, nats3):
    def node(name, servers):
        keys = {"sink.js__type": "nats", "sink.js__servers": ",".join(s.url for s in servers),
                "sink.js__replicas": 3, "sink.js__retry_max_ms": 1000}
        return two_nodes(name, **{**TOPICS, "sinkd__sinks": "js", **keys}).start()
    a = node("a", nats3)
    b = node("b", nats3[::-1])
    send(a, 2, 100)
    send(b, 2, 100)   # the same device ids and seqs: only the log id tells them apart
    a.wait_sinks_caught_up(timeout=60)
    b.wait_sinks_caught_up(timeout=60)
    ids = [a.stats()["log_id"], b.stats()["log_id"]]
    assert ids[0] != ids[1]
    _, msgs = wait_stream(nats3[0].port, 400)
    assert_each_once(msgs, [a.dump(), b.dump()], ids)


def test_a_missing_stream_without_create_is_failing_and_says_so(pipeline_factory, nats):
    p = nats_pipeline(pipeline_factory, [nats], **{"sink.js__create_stream": "false"}).start()
    send(p, 1, 10)
    wait_for(lambda: sinks(p)["js"]["state"] == "failing", 30, "state failing")
    assert "stream INGEST: not found (create_stream = false)" in sinks(p)["js"]["last_error"]


@pytest.mark.parametrize("extra,msg", [
    ({"sink.js__subject": "ingest.{nope}"}, "unknown placeholder"),
    ({"sink.js__subject": "ingest.*"}, "not a subject to publish on"),
    ({"sink.js__duplicate_window": "soon"}, "duplicate_window = soon: not a duration"),
    ({"sink.js__stream": "a.b"}, "not a stream name"),
])
def test_a_bad_nats_key_stops_that_instance_naming_it(pipeline_factory, nats, extra, msg):
    p = nats_pipeline(pipeline_factory, [nats], **extra).start()
    wait_for(lambda: sinks(p)["js"]["state"] == "stopped", 30, "the instance stopped")
    assert msg in sinks(p)["js"]["last_error"], sinks(p)["js"]["last_error"]


def test_wrong_credentials_are_failing_then_the_right_ones_catch_up(pipeline_factory, tmp_path):
    srv = NatsServer(tmp_path, extra=("--user", "ingest", "--pass", "right")).start()
    try:
        p = nats_pipeline(pipeline_factory, [srv], **{"sink.js__user": "ingest", "sink.js__password": "wrong"})
        p.start()
        send(p, 1, 20)
        wait_for(lambda: sinks(p)["js"]["state"] == "failing", 30, "state failing")
        err = sinks(p)["js"]["last_error"]
        assert f"connect to {srv.url}: " in err and "Authorization Violation" in err, err
        assert sinks(p)["js"]["committed_lsn"] == 0
        p.stop()
        p.set(**{"sink.js__password": "right"})
        p.start()
        p.wait_sinks_caught_up(timeout=60)
        _, msgs = wait_stream(srv.port, 20, auth=("ingest", "right"))
        assert len(msgs) == 20
    finally:
        srv.kill()


def test_a_token_authenticates(pipeline_factory, tmp_path):
    srv = NatsServer(tmp_path, extra=("--auth", "s3cr3t-token")).start()
    try:
        p = nats_pipeline(pipeline_factory, [srv], **{"sink.js__token": "s3cr3t-token"}).start()
        send(p, 1, 30)
        p.wait_sinks_caught_up(timeout=60)
        _, msgs = wait_stream(srv.port, 30, auth={"auth_token": "s3cr3t-token"})
        assert len(msgs) == 30
    finally:
        srv.kill()


def test_an_nkey_authenticates(pipeline_factory, tmp_path):
    pub, seed = nkey_user()
    (tmp_path / "user.nk").write_text(seed + "\n")
    (tmp_path / "auth.conf").write_text(f"authorization {{ users = [ {{ nkey: {pub} }} ] }}\n")
    srv = NatsServer(tmp_path, extra=("-c", tmp_path / "auth.conf")).start()
    try:
        p = nats_pipeline(pipeline_factory, [srv], **{"sink.js__nkey": pub,
                                                      "sink.js__nkey_seed_file": tmp_path / "user.nk"})
        p.start()
        send(p, 1, 30)
        p.wait_sinks_caught_up(timeout=60)
        assert sinks(p)["js"]["state"] == "running" and sinks(p)["js"]["records"] == 30
    finally:
        srv.kill()


def test_tls_servers_are_verified_with_ca_file(pipeline_factory, tmp_path):
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    r = subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
                        "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out",
                        str(cert)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    srv = NatsServer(tmp_path, extra=("--tls", "--tlscert", cert, "--tlskey", key)).start()
    try:
        url = f"tls://127.0.0.1:{srv.port}"
        p = nats_pipeline(pipeline_factory, [srv], **{"sink.js__servers": url})
        p.start()
        send(p, 1, 20)
        wait_for(lambda: sinks(p)["js"]["failures"] > 0, 30, "the unverified server refused")
        assert sinks(p)["js"]["records"] == 0 or sinks(p)["js"]["committed_lsn"] == 0
        p.stop()
        p.set(**{"sink.js__ca_file": cert})
        p.start()
        p.wait_sinks_caught_up(timeout=60)
        assert sinks(p)["js"]["state"] == "running"
    finally:
        srv.kill()


def test_a_creds_file_authenticates_against_an_operator_mode_server(pipeline_factory, tmp_path):
    conf, creds = operator_setup(tmp_path)
    (tmp_path / "op.conf").write_text(conf)
    (tmp_path / "node.creds").write_text(creds)
    srv = NatsServer(tmp_path, extra=("-c", tmp_path / "op.conf")).start()
    try:
        p = nats_pipeline(pipeline_factory, [srv], **{"sink.js__creds_file": tmp_path / "node.creds"}).start()
        send(p, 1, 25)
        p.wait_sinks_caught_up(timeout=60)
        assert sinks(p)["js"]["state"] == "running" and sinks(p)["js"]["records"] == 25
    finally:
        srv.kill()
