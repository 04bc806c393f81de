"""The index sink: one SQLite row per record, numeric fields of JSON or
binary payloads, exactly once across crashes, readable while it runs."""
import base64
import csv
import io
import json
import sqlite3
import struct
import subprocess
import time

import pytest

from conftest import BIN, wait_for

T0 = 1_700_000_000_000_000_000   # device time of the first frame (ns)
STEP = 1_000_000_000            # one second between a device's frames


def index_pipeline(pipeline_factory, **extra):
    return pipeline_factory(**{"sinkd__sinks": "idx", "sink.idx__type": "index", **extra})


def sinks(p):
    return {s["name"]: s for s in p.stats()["sinks"]}


def db(p, name="idx"):
    c = sqlite3.connect(f"file:{p.data / 'index' / (name + '.sqlite')}?mode=ro", uri=True)
    c.row_factory = sqlite3.Row
    return c


def json_frames(device_no, n, seq0=1):
    """(seq, payload, ts_ns) of device_no's frames: temp and hum numbers,
    a nested object and a string that must not count as fields."""
    for i in range(n):
        seq = seq0 + i
        body = {"temp": 20 + device_no + i / 10, "hum": 40 + (i % 7), "note": "x", "inner": {"temp": -1},
                "list": [1, 2]}
        yield seq, json.dumps(body).encode(), T0 + (seq - 1) * STEP + device_no


def send_json(p, device, frames):
    with p.client(device) as c:
        c.hello()
        acked, nacks = c.send_and_wait_acks([{"seq": s, "payload": d, "ts_ns": t} for s, d, t in frames])
    assert not nacks
    return acked


def send_devices(p, devices, n):
    """json_frames of devices dev-0 .. dev-(devices-1), n each, indexed:
    {device: [(seq, payload, ts_ns)]}."""
    sent = {}
    for d in range(devices):
        sent[f"dev-{d}"] = list(json_frames(d, n))
        send_json(p, f"dev-{d}", sent[f"dev-{d}"])
    p.wait_sinks_caught_up()
    return sent


def test_every_record_is_one_row_with_its_json_numbers(pipeline_factory):
    p = index_pipeline(pipeline_factory).start()
    sent = send_devices(p, 3, 200)
    c = db(p)
    rows = c.execute("SELECT * FROM records_v ORDER BY lsn").fetchall()
    assert len(rows) == 600
    for dev, frames in sent.items():
        got = [(r["seq"], r["ts_ns"], r["len"]) for r in rows if r["device"] == dev]
        assert got == [(s, t, len(d)) for s, d, t in frames]
    fields = {r[0] for r in c.execute("SELECT name FROM fields")}
    assert fields == {"temp", "hum"}, "only top-level numbers are fields"
    vals = c.execute("SELECT device, ts_ns, temp, hum FROM records_v ORDER BY device, ts_ns").fetchall()
    want = sorted((dev, t, json.loads(d)["temp"], json.loads(d)["hum"]) for dev, fr in sent.items() for _, d, t in fr)
    assert [tuple(v) for v in vals] == want
    meta = dict(c.execute("SELECT key, value FROM meta").fetchall())
    assert meta["schema"] == 1 and meta["next_lsn"] > rows[-1]["lsn"]
    assert c.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    # a range of one device's time is an index seek, not a scan
    plan = " ".join(r[3] for r in c.execute(
        "EXPLAIN QUERY PLAN SELECT * FROM records WHERE device = 1 AND ts_ns >= 5 AND ts_ns < 9"))
    assert "USING INDEX records_device_ts" in plan, plan
    plan = " ".join(r[3] for r in c.execute(
        "EXPLAIN QUERY PLAN SELECT v1 FROM records WHERE ts_ns >= 5 AND ts_ns < 9 AND v1 IS NOT NULL"))
    assert "USING INDEX records_ts" in plan, plan


def test_a_binary_layout_and_a_field_list_pick_the_values(pipeline_factory):
    p = index_pipeline(pipeline_factory, **{"sink.idx__layout": "temp:f32le@0, hum:u16be@4, code:i8@6",
                                          "sink.idx__fields": "temp, code"}).start()
    frames = [(i + 1, struct.pack("<f", i + 0.5) + struct.pack(">H", 1000 + i) + struct.pack("b", -i),
               T0 + i * STEP) for i in range(50)]
    frames.append((51, b"\x00\x00\x80\x3f", T0 + 50 * STEP))   # 1.0, too short for hum and code
    send_json(p, "bin-1", frames)
    p.wait_sinks_caught_up()
    c = db(p)
    got = {(f, r["ts_ns"]): r[f] for r in c.execute("SELECT * FROM records_v") for f in ("temp", "code")
           if r[f] is not None}
    assert "hum" not in [d[0] for d in c.execute("SELECT * FROM records_v").description]
    want = {("temp", T0 + i * STEP): i + 0.5 for i in range(50)}
    want.update({("code", T0 + i * STEP): -i for i in range(50)})
    want[("temp", T0 + 50 * STEP)] = 1.0
    assert got == want


def test_a_bad_key_stops_sinkd_and_a_bad_layout_stops_the_instance_naming_it(pipeline_factory):
    p = index_pipeline(pipeline_factory, **{"sink.idx__max_fields": "0"})
    r = p.run(BIN / "sinkd", "-c", p.ini, timeout=30)
    assert r.returncode == 2 and "max_fields" in r.stderr and "[sink.idx]" in r.stderr, r.stderr
    for layout, msg in [("temp:f33le@0", "layout: field temp: type 'f33le'"),
                        ("temp@0", "layout: 'temp@0': want name:type@offset")]:
        p = index_pipeline(pipeline_factory, sinkd__sinks="idx, disk",
                           **{"sink.idx__layout": layout, "sink.disk__type": "disk"}).start()
        wait_for(lambda: sinks(p)["idx"]["state"] == "stopped", 20, "the index instance to stop")
        assert msg in sinks(p)["idx"]["last_error"], sinks(p)["idx"]
        assert p.send("other-1", 20).returncode == 0, "the other instance runs"
        p.wait_sinks_caught_up(names=("disk",))
        p.stop()


def test_sinkd_killed_mid_stream_leaves_no_row_missing_or_twice(pipeline_factory):
    p = index_pipeline(pipeline_factory, **{"sink.idx__batch_records": 64}).start()
    s = p.stream("crash-1")
    for _ in range(3):
        s.wait_progress(2000)
        old = p.kill("sinkd")
        p.wait_restarted("sinkd", old)
    s.wait_progress(2000)
    s.stop()
    p.wait_sinks_caught_up(timeout=60)
    seqs = [r[0] for r in db(p).execute("SELECT seq FROM records_v WHERE device = 'crash-1' ORDER BY lsn")]
    assert seqs == list(range(s.first, s.last + 1))


def test_the_database_is_read_while_ingest_runs(pipeline_factory):
    p = index_pipeline(pipeline_factory).start()
    s = p.stream("live-1")
    c = db(p)

    def count():
        return c.execute("SELECT count(*) FROM records").fetchone()[0]
    first = wait_for(count, 60, "rows to appear")
    wait_for(lambda: count() > first, 60, "the row count to grow under a reader")
    # the sqlite3 shell reads it too, while sinkd writes
    r = subprocess.run(["sqlite3", "-readonly", p.data / "index" / "idx.sqlite",
                        "SELECT count(*) FROM records_v WHERE device = 'live-1'"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and int(r.stdout) >= first, r.stderr
    s.stop()


# -- mi-query --

def query(p, *args, check=True):
    r = p.run(BIN / "mi-query", "-c", p.ini, *map(str, args), timeout=60)
    if check:
        assert r.returncode == 0, r.stderr
    return r


def ndjson(p, *args):
    return [json.loads(l) for l in query(p, "--format", "ndjson", *args).stdout.splitlines()]


def rfc3339(ns):
    s, frac = divmod(ns, 1_000_000_000)
    import datetime
    return datetime.datetime.fromtimestamp(s, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S") + \
        f".{frac:09d}Z"


@pytest.fixture
def indexed(pipeline_factory):
    """Three devices' JSON frames, one a second of device time each, indexed."""
    p = index_pipeline(pipeline_factory).start()
    sent = {dev: [{"device": dev, "seq": s, "ts_ns": t, "payload": pl.decode()} for s, pl, t in frames]
            for dev, frames in send_devices(p, 3, 300).items()}
    return p, sent


def in_range(sent, lo, hi, devices=None):
    out = [r for dev, rs in sent.items() if devices is None or dev in devices for r in rs if lo <= r["ts_ns"] < hi]
    return sorted(out, key=lambda r: (r["ts_ns"], r["device"]))


def test_each_time_range_returns_exactly_its_records_in_order(indexed):
    p, sent = indexed
    for lo, hi, devs in [(T0, T0 + 300 * STEP, None), (T0 + 17 * STEP, T0 + 18 * STEP, None),
                         (T0 + 50 * STEP + 1, T0 + 120 * STEP + 1, ["dev-1"]),
                         (T0 + 10 * STEP, T0 + 20 * STEP, ["dev-0", "dev-2"])]:
        args = ["--from", rfc3339(lo), "--to", rfc3339(hi)]
        for d in devs or ():
            args += ["--device", d]
        got = ndjson(p, *args)
        want = in_range(sent, lo, hi, devs)
        assert [(g["device"], g["seq"], g["ts_ns"], g["payload"]) for g in got] == \
            [(w["device"], w["seq"], w["ts_ns"], w["payload"]) for w in want], (lo, hi, devs)
        lsns = [g["lsn"] for g in got]
        assert len(set(lsns)) == len(lsns)
    got = ndjson(p, "--device", "dev-2", "--limit", 5)
    assert [g["seq"] for g in got] == [1, 2, 3, 4, 5]
    # by server time: every record, in server-time order
    got = ndjson(p, "--by", "server")
    assert len(got) == 900 and [g["srv_ns"] for g in got] == sorted(g["srv_ns"] for g in got)


def test_bucket_aggregates_equal_our_own(indexed):
    p, sent = indexed
    width = 60 * STEP
    lo, hi = T0 + 30 * STEP, T0 + 250 * STEP
    got = ndjson(p, "--bucket", "1m", "--field", "temp", "--from", rfc3339(lo), "--to", rfc3339(hi))
    want = {}
    for r in in_range(sent, lo, hi):
        v = json.loads(r["payload"])["temp"]
        b = want.setdefault((r["ts_ns"] - r["ts_ns"] % width, r["device"]), [])
        b.append(v)
    assert [(g["bucket"], g["device"]) for g in got] == [(rfc3339(b), d) for b, d in sorted(want)]
    for g in got:
        vs = want[(g["bucket"] and [b for b, d in want if rfc3339(b) == g["bucket"]][0], g["device"])]
        assert g["field"] == "temp" and g["count"] == len(vs)
        assert (g["min"], g["max"], g["first"], g["last"]) == (min(vs), max(vs), vs[0], vs[-1])
        assert g["avg"] == pytest.approx(sum(vs) / len(vs), rel=1e-12)


def test_latest_is_each_devices_last_record_and_values(indexed):
    p, sent = indexed
    got = ndjson(p, "--latest")
    assert [g["device"] for g in got] == ["dev-0", "dev-1", "dev-2"]
    for g in got:
        last = sent[g["device"]][-1]
        assert (g["seq"], g["ts_ns"], g["payload"]) == (last["seq"], last["ts_ns"], last["payload"])
        body = json.loads(last["payload"])
        assert g["fields"] == {"temp": {"value": body["temp"], "ts_ns": last["ts_ns"]},
                               "hum": {"value": body["hum"], "ts_ns": last["ts_ns"]}}


def test_csv_parses_with_a_csv_reader(indexed):
    p, sent = indexed
    out = query(p, "--format", "csv", "--device", "dev-1").stdout
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [(r["device"], int(r["seq"]), int(r["ts_ns"]), r["payload"]) for r in rows] == \
        [(r["device"], r["seq"], r["ts_ns"], r["payload"]) for r in sent["dev-1"]]
    out = query(p, "--format", "csv", "--bucket", "1h", "--field", "hum").stdout
    rows = list(csv.DictReader(io.StringIO(out)))
    assert sum(int(r["count"]) for r in rows) == 900 and {r["device"] for r in rows} == set(sent)


def test_binary_payloads_come_as_base64(pipeline_factory):
    p = index_pipeline(pipeline_factory).start()
    raw = bytes(range(256))
    send_json(p, "raw-1", [(1, raw, T0)])
    p.wait_sinks_caught_up()
    (got,) = ndjson(p)
    assert "payload" not in got and base64.b64decode(got["payload_b64"]) == raw


def test_bad_input_is_one_line_and_exit_2(indexed):
    p, _ = indexed
    for args, msg in [(["--from", "yesterday"], "--from 'yesterday': not a time"),
                      (["--bucket", "1m", "--field", "nope"], "--field nope: no such field"),
                      (["--bucket", "soon", "--field", "temp"], "--bucket 'soon'"),
                      (["--format", "xml"], "--format 'xml'"),
                      (["--sink", "other"], "no index instance 'other'"),
                      (["--from", "-1h", "--to", "-2h"], "is not before --to")]:
        r = query(p, *args, check=False)
        assert r.returncode == 2 and msg in r.stderr and r.stderr.count("\n") == 1, (args, r.stderr)
        assert r.stdout == ""
    r = query(p, "--device", "nobody")
    assert r.stdout == ""
    p.set(**{"sink.idx__path": p.tmp / "absent.sqlite"})
    r = query(p, check=False)
    assert r.returncode == 2 and "absent.sqlite: no index here" in r.stderr, r.stderr


def test_a_query_runs_while_ingest_runs(pipeline_factory):
    p = index_pipeline(pipeline_factory).start()
    s = p.stream("busy-1", rate=2000)   # bounded rows per query, not a bounded run
    s.wait_progress(1000)
    counts = []
    for _ in range(5):
        got = ndjson(p, "--device", "busy-1")
        seqs = [g["seq"] for g in got]
        assert seqs == list(range(1, len(seqs) + 1)), "a whole prefix, in order, each once"
        counts.append(len(seqs))
        s.wait_progress(500)
    s.stop()
    assert counts == sorted(counts) and counts[-1] > counts[0]


def test_retain_ms_removes_rows_older_than_it(pipeline_factory):
    p = index_pipeline(pipeline_factory, **{"sink.idx__retain_ms": 3_600_000, "sink.idx__commit_ms": 50}).start()
    now = time.time_ns()
    old = [(s, b'{"v": %d}' % s, T0 + s * STEP) for s in range(1, 101)]           # 2023: past an hour
    new = [(s, b'{"v": %d}' % s, now - (200 - s) * STEP) for s in range(101, 201)]  # the last minutes
    send_json(p, "ret-1", old + new)
    p.wait_sinks_caught_up()
    c = db(p)
    wait_for(lambda: c.execute("SELECT count(*) FROM records").fetchone()[0] == 100, 30, "old records removed")
    assert [r[0] for r in c.execute("SELECT seq FROM records ORDER BY lsn")] == list(range(101, 201))
    assert c.execute("SELECT min(v) FROM records_v").fetchone()[0] == 101


def test_a_record_whose_segment_was_retired_is_listed_as_retired(pipeline_factory):
    # 8M segments (conftest); retention keeps 16M: the first segments go
    p = index_pipeline(pipeline_factory, wal__retain_bytes="16M").start()
    assert p.send("old-1", 200_000, size=100, extra=("-t", 1)).returncode == 0
    p.wait_sinks_caught_up(timeout=60)
    first = db(p).execute("SELECT min(lsn) FROM records").fetchone()[0]
    wait_for(lambda: not (p.data / "wal" / f"{first:020d}.seg").exists(), 30, "the first segment to be retired")
    got = ndjson(p, "--limit", 2)
    assert [g["seq"] for g in got] == [1, 2] and all(g["payload_retired"] == "retired" for g in got)
    assert "payload" in got[0] and got[0]["payload"] is None
    (last,) = ndjson(p, "--latest")
    assert last["seq"] == 200_000 and last["payload"].startswith("old-1:200000;")
    assert [g["seq"] for g in ndjson(p, "--topic", 1, "--limit", 1)] == [1]
    assert ndjson(p, "--topic", 2) == []


def test_a_backfill_puts_back_lost_rows_once_and_leaves_next_lsn_alone(pipeline_factory):
    p = index_pipeline(pipeline_factory).start()
    frames = list(json_frames(0, 100))
    send_json(p, "bf-1", frames)
    p.wait_sinks_caught_up()
    path = p.data / "index" / "idx.sqlite"
    with sqlite3.connect(path) as rw:   # rows lost, as a restored old copy would lose them
        rw.execute("DELETE FROM records WHERE seq > 40 AND seq <= 70")
    next_lsn = db(p).execute("SELECT value FROM meta WHERE key = 'next_lsn'").fetchone()[0]
    r = p.run(BIN / "sinkd", "-c", p.ini, "--backfill", "idx", "--from-lsn", 0, timeout=120)
    assert r.returncode == 0 and r.stdout.startswith("backfill idx: 100 records"), r.stdout + r.stderr
    c = db(p)
    assert [r[0] for r in c.execute("SELECT seq FROM records ORDER BY lsn")] == list(range(1, 101))
    assert [r[0] for r in c.execute("SELECT temp FROM records_v ORDER BY lsn")] == \
        [json.loads(d)["temp"] for _, d, _ in frames]
    assert c.execute("SELECT value FROM meta WHERE key = 'next_lsn'").fetchone()[0] == next_lsn
    # the live instance goes on, no row twice
    send_json(p, "bf-1", json_frames(0, 10, seq0=101))
    p.wait_sinks_caught_up()
    assert [r[0] for r in c.execute("SELECT seq FROM records ORDER BY lsn")] == list(range(1, 111))
    assert "was replaced or lost its end" not in p.log.read_text()
