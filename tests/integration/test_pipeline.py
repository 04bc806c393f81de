"""The spine end to end: frames in, acked, stored once, delivered to the sink."""
import hashlib
import json
import os
import socket
import subprocess
import time
from pathlib import Path

import pytest

import mi_client
from conftest import BIN, assert_exactly_once, wait_for


@pytest.mark.parametrize("wakeup", ["io_uring", "thread"])
def test_frames_from_many_devices_are_acked_stored_once_and_sunk(pipeline_factory, wakeup):
    # both ways a durable publication reaches ingestd's loop (ack_wakeup)
    pipeline = pipeline_factory(server__ack_wakeup=wakeup).start()
    assert f"durable wake-ups: {'io_uring futex wait' if wakeup == 'io_uring' else 'notifier thread'}" \
        in pipeline.log.read_text()
    devices = {f"dev-{i}": 3000 for i in range(8)}
    procs = [pipeline.send_async(d, n, size=100) for d, n in devices.items()]
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    assert_exactly_once(pipeline.dump(), devices)
    pipeline.wait_sinks_caught_up()
    entries = pipeline.disk_entries()
    assert_exactly_once(entries, devices)
    for e in entries[:50]:
        assert e["payload"] == mi_client.gen_payload(e["device"], e["seq"], 100)


def test_retry_at_or_below_last_seq_is_acked_not_stored_again(pipeline):
    with pipeline.client("retry-dev") as c:
        assert c.hello() == 0
        acked, nacks = c.send_and_wait_acks([(s, b"v%d" % s) for s in range(1, 11)])
        assert acked == 10 and not nacks
        # the same seqs again, as a device that missed the ACKs would send them
        acked, nacks = c.send_and_wait_acks([(s, b"again") for s in range(5, 11)])
        assert acked == 10 and not nacks
    with pipeline.client("retry-dev") as c:
        assert c.hello() == 10, "WELCOME carries the last durable seq"
    recs = [r for r in pipeline.dump() if r["device"] == "retry-dev"]
    assert sorted(r["seq"] for r in recs) == list(range(1, 11))


def test_gaps_in_seq_are_allowed_and_acks_are_cumulative(pipeline):
    with pipeline.client("gap-dev") as c:
        c.hello()
        seqs = [1 << 32 | 1, 1 << 32 | 2, 2 << 32 | 1]
        acked, nacks = c.send_and_wait_acks([(s, b"x") for s in seqs])
        assert acked == seqs[-1] and not nacks
    assert sorted(r["seq"] for r in pipeline.dump() if r["device"] == "gap-dev") == seqs


def test_seq_zero_is_refused_with_nack_bad_sequence(pipeline):
    with pipeline.client("zero-dev") as c:
        c.hello()
        c.send_data(0, b"zero")
        f = c.read_frame(5)
        assert f.type == mi_client.NACK and mi_client.parse_nack(f.payload)[0] == 3
    assert not [r for r in pipeline.dump() if r["device"] == "zero-dev"]


def test_new_hello_for_a_device_closes_the_older_session(pipeline):
    old = pipeline.client("twin").connect()
    old.hello()
    new = pipeline.client("twin").connect()
    new.hello()
    try:
        f = old.read_frame(5)
        raise AssertionError(f"old session still open, got {f}")
    except mi_client.ConnectionClosed:
        pass
    acked, _ = new.send_and_wait_acks([(1, b"a")])
    assert acked == 1
    new.close()
    assert pipeline.counter("ingestd", "session_takeover") == 1


def test_stats_command_prints_every_stage_as_table_and_json(pipeline):
    assert pipeline.send("stats-dev", 100).returncode == 0
    st = pipeline.stats()
    assert set(st["stages"]) == {"ingestd", "flusherd", "sinkd"}
    assert all(s["up"] for s in st["stages"].values())
    assert st["stages"]["ingestd"]["counters"]["frames_stored"] == 100
    fc = st["stages"]["flusherd"]["counters"]
    assert fc["records"] == 100
    # every successful fdatasync is in exactly one duration bucket
    assert fc["syncs"] > 0
    assert sum(v for k, v in fc.items() if k.startswith("sync_us_")) == fc["syncs"]
    assert st["durable_lsn"] > 0
    dev = [d for d in st["devices"] if d["id"] == "stats-dev"][0]
    assert dev["last_durable"] == 100
    table = pipeline.run(BIN / "ingest-stats", "-c", pipeline.ini).stdout
    for word in ("ingestd", "flusherd", "sinkd", "frames_stored", "durable LSN", "disk"):
        assert word in table
    r = pipeline.run(BIN / "ingest-stats", "-i", "no-such-instance")
    assert r.returncode == 1 and "no-such-instance" in r.stderr


def ndjson_line(source, data, ts="2026-11-26T10:00:00.5Z", checksum=True, **extra):
    o = {"source": source, "data": data, "timestamp": ts}
    if checksum:
        o["checksum"] = hashlib.sha256(data.encode()).hexdigest()
    o.update(extra)
    return (json.dumps(o) + "\n").encode()


def test_ndjson_lines_are_stored_under_their_source(pipeline):
    s = socket.create_connection(("127.0.0.1", pipeline.port))
    lines = [ndjson_line("nd-a", f"reading {i}") for i in range(5)] + [ndjson_line("nd-b", "x", checksum=False)]
    blob = b"".join(lines)
    # split mid-line: the server must reassemble lines across reads, so
    # the rest goes only once ingestd has read the first part
    bytes_in = pipeline.counter("ingestd", "bytes_in")
    s.sendall(blob[:37])
    wait_for(lambda: pipeline.counter("ingestd", "bytes_in") >= bytes_in + 37, 10, "the first 37 bytes read")
    s.sendall(blob[37:])
    s.sendall(ndjson_line("nd-a", "tampered")[:-1].replace(b'"data": "tampered"', b'"data": "tampereD"') + b"\n")
    s.sendall(b"this is not json\n")
    s.settimeout(5)
    answers = b""
    while answers.count(b"\n") < 2:
        answers += s.recv(4096)
    s.close()
    assert b"line 7: checksum does not match data" in answers
    assert b"line 8: not valid JSON" in answers

    def stored():
        return [r for r in pipeline.dump() if r["device"].startswith("nd-")]
    recs = wait_for(lambda: len(stored()) == 6 and stored(), 10, "NDJSON records")
    a = sorted(r["seq"] for r in recs if r["device"] == "nd-a")
    assert a == [1, 2, 3, 4, 5]
    assert recs[0]["ts_ns"] == 1795687200500000000
    assert pipeline.counter("ingestd", "ndjson_errors") == 2


def test_ndjson_is_refused_when_disabled(pipeline_factory):
    p = pipeline_factory(auth__ndjson="false").start()
    s = socket.create_connection(("127.0.0.1", p.port))
    s.sendall(ndjson_line("nd-off", "x"))
    s.settimeout(5)
    assert b"NDJSON is disabled" in s.recv(4096)
    assert s.recv(4096) == b""
    assert not p.dump()


def test_bad_config_stops_startup_naming_the_key(pipeline_factory, tmp_path):
    p = pipeline_factory()
    bad = tmp_path / "bad.ini"
    bad.write_text(p.ini.read_text() + "\n[wal]\ncommit_byts = 1M\n")
    for binary in ("ingestd", "flusherd", "sinkd"):
        r = p.run(BIN / binary, "-c", bad)
        assert r.returncode == 2 and "commit_byts" in r.stderr and "[wal]" in r.stderr, r.stderr
    r = p.run(BIN / "flusherd", "-c", p.ini, env={"INGEST_WAL_COMMIT_US": "soon"})
    assert r.returncode == 2 and "INGEST_WAL_COMMIT_US" in r.stderr and "soon" in r.stderr
    r = p.run(BIN / "ingestd", "-c", p.ini, env={"INGEST_SERVER_LISTN": "x"})
    assert r.returncode == 2 and "INGEST_SERVER_LISTN" in r.stderr
    r = p.run(BIN / "ingestd", "-c", tmp_path / "missing.ini")
    assert r.returncode == 2 and "missing.ini" in r.stderr
    assert "max_frame" in p.run(BIN / "ingestd", "--help").stdout


def test_sigterm_stops_in_order_and_everything_acked_is_durable(pipeline):
    assert pipeline.send("term-dev", 2000).returncode == 0
    pipeline.stop()
    log = pipeline.log.read_text()
    order = [log.index(f"{s} stopped") for s in ("ingestd", "flusherd", "sinkd")]
    assert order == sorted(order), log[-2000:]
    assert_exactly_once(pipeline.dump(), {"term-dev": 2000})
    assert_exactly_once(pipeline.disk_entries(), {"term-dev": 2000})


def test_sink_commits_once_per_commit_ms_not_once_per_group_commit(pipeline_factory):
    """Each sink commit is a disk flush; one per WAL group commit would put a
    second flush beside every fdatasync the ACKs wait for."""
    p = pipeline_factory(sinkd__commit_ms=700).start()
    syncs0 = p.counter("flusherd", "syncs")
    t0 = time.monotonic()
    for i in range(30):                       # 30 separate group commits
        assert p.send("trickle", 1).returncode == 0
        time.sleep(0.05)
    elapsed = time.monotonic() - t0
    assert p.counter("flusherd", "syncs") - syncs0 >= 30
    p.wait_sinks_caught_up(timeout=10)        # caught up: committed within commit_ms
    assert p.counter("sinkd", "commits") <= elapsed / 0.7 + 3
    assert_exactly_once(p.disk_entries(), {"trickle": 30})


def test_a_caught_up_sink_reads_in_batch_ms_batches_not_per_group_commit(pipeline_factory):
    """[sinkd] batch_ms: a sink that has caught up waits that long before
    reading again, so group commits in between reach it as one batch (its
    wake-ups would otherwise land on every ACK round); nothing is lost."""
    def batches_for(batch_ms, device, expect):
        # one data dir: the second pipeline finds the first one's records
        p = pipeline_factory(sinkd__batch_ms=batch_ms).start()
        b0, syncs0 = p.counter("sinkd", "batches"), p.counter("flusherd", "syncs")
        t0 = time.monotonic()
        r = p.send(device, 400, extra=("--window", "1"))   # one frame per group commit
        elapsed = time.monotonic() - t0
        assert r.returncode == 0
        p.wait_sinks_caught_up(timeout=10)
        syncs = p.counter("flusherd", "syncs") - syncs0
        assert syncs >= 400
        assert_exactly_once(p.disk_entries(), expect)
        n = p.counter("sinkd", "batches") - b0
        p.stop()
        return n, syncs, elapsed
    eager, syncs, _ = batches_for(0, "eager", {"eager": 400})
    assert eager >= syncs / 2, (eager, syncs)             # about one batch per group commit
    batched, syncs, elapsed = batches_for(200, "batched", {"eager": 400, "batched": 400})
    assert batched <= elapsed / 0.2 + 3, (batched, syncs, elapsed)


def test_acks_still_flow_where_io_uring_is_disabled(pipeline_factory):
    # kernel.io_uring_disabled = 2 (a common hardening) refuses io_uring to
    # every process: ingestd falls back to its notifier thread and says why
    knob = Path("/proc/sys/kernel/io_uring_disabled")
    if not knob.exists() or not os.access(knob, os.W_OK):
        pytest.skip("needs a writable kernel.io_uring_disabled (root)")
    old = knob.read_text().strip()
    knob.write_text("2")
    try:
        p = pipeline_factory().start()
    finally:
        knob.write_text(old)
    assert "durable wake-ups: notifier thread (io_uring futex wait: Operation not permitted)" in p.log.read_text()
    r = p.send("no-uring", 2000)
    assert r.returncode == 0, r.stderr
    assert_exactly_once(p.dump(), {"no-uring": 2000})
