"""The cloud sink against a real S3-compatible server that checks SigV4
signatures (tests/integration/s3.py): objects listed, downloaded,
decompressed and compared record by record; the server killed mid-upload;
a wrong secret refused, then mended."""
import base64
import datetime
import os
import re
import signal

import pytest

from conftest import BIN, wait_for
from s3 import S3Server

TOPICS = {"topics__telemetry": 1, "topics__logs": 2}
KEY_RE = re.compile(r"^(?P<topic>[a-z0-9]+)/(?P<date>\d{4}-\d\d-\d\d)/(?P<hour>\d\d)/"
                    r"(?P<first>\d+)-(?P<last>\d+)\.ndjson\.gz$")


@pytest.fixture
def s3(tmp_path):
    s = S3Server(tmp_path).start()
    yield s
    s.kill()


def cloud_pipeline(pipeline_factory, s3, **extra):
    keys = {"sink.s3__type": "cloud", "sink.s3__endpoint": s3.endpoint, "sink.s3__bucket": s3.bucket,
            "sink.s3__path_style": "true", "sink.s3__batch_records": 50, "sink.s3__batch_ms": 300,
            "sink.s3__retry_max_ms": 1000, **extra}
    return pipeline_factory(**TOPICS, sinkd__sinks="s3", **keys)


def creds(s3, secret=None):
    return {"AWS_ACCESS_KEY_ID": s3.key_id, "AWS_SECRET_ACCESS_KEY": secret or s3.secret}


def sinks(p):
    return {s["name"]: s for s in p.stats()["sinks"]}


def payload_of(device_no, seq):
    """Text for most frames, bytes that are not UTF-8 for every seventh."""
    if seq % 7 == 0:
        return bytes([0xff, 0xfe, device_no, seq & 0xff]) + b"\x00binary"
    return f'{{"dev":{device_no},"seq":{seq},"note":"a \\"quoted\\" word\\n"}}'.encode()


def send(p, devices, n, seq0=1):
    """Devices d0.. send seqs seq0..seq0+n-1 on topics 1, 2 and 0 in turn.
    Returns {(device, seq): (topic, payload)}."""
    sent = {}
    for d in range(devices):
        dev = f"d{d}"
        frames = []
        for seq in range(seq0, seq0 + n):
            topic = (1, 2, 0)[seq % 3]
            frames.append({"seq": seq, "payload": payload_of(d, seq), "topic": topic})
            sent[(dev, seq)] = (topic, frames[-1]["payload"])
        with p.client(dev) as c:
            c.hello()
            _, nacks = c.send_and_wait_acks(frames)
        assert not nacks
    return sent


def object_records(s3):
    """Every record of every object, checked against the object's key:
    [(key, record)]."""
    out = []
    for key, recs in s3.objects().items():
        m = KEY_RE.match(key)
        assert m, f"key {key!r} is not {{topic}}/{{date}}/{{hour}}/{{first_lsn}}-{{last_lsn}}.ndjson.gz"
        assert recs, f"{key}: an empty object"
        lsns = [r["lsn"] for r in recs]
        assert lsns == sorted(lsns) and len(set(lsns)) == len(lsns), f"{key}: LSNs out of order"
        assert (int(m["first"]), int(m["last"])) == (lsns[0], lsns[-1]), f"{key}: range is not its records'"
        names = {r.get("topic_name", str(r["topic"])) for r in recs}
        assert names == {m["topic"]}, f"{key}: one topic per object, got {names}"
        t = datetime.datetime.fromtimestamp(recs[0]["srv_ns"] / 1e9, datetime.timezone.utc)
        assert (m["date"], m["hour"]) == (t.strftime("%Y-%m-%d"), t.strftime("%H")), key
        out += [(key, r) for r in recs]
    return out


def assert_each_once(got, sent, dump):
    """Every sent record in exactly one object, field by field."""
    lsn_of = {(r["device"], r["seq"]): r for r in dump}
    seen = {}
    for key, r in got:
        k = (r["device"], r["seq"])
        assert k not in seen, f"{k} in two objects: {seen[k]} and {key}"
        seen[k] = key
        topic, payload = sent[k]
        assert r["topic"] == topic
        assert ("topic_name" in r) == (topic != 0)
        if "payload_b64" in r:
            assert base64.b64decode(r["payload_b64"]) == payload and b"binary" in payload
        else:
            assert r["payload"].encode() == payload
        d = lsn_of[k]
        assert r["lsn"] == d["lsn"] and r["ts_ns"] == d["ts_ns"] and r["srv_ns"] >= r["ts_ns"] - 10**12
    missing = set(sent) - set(seen)
    assert not missing, f"{len(missing)} records in no object, e.g. {sorted(missing)[:3]}"


def test_records_of_several_devices_and_topics_each_land_in_one_object(pipeline_factory, s3):
    p = cloud_pipeline(pipeline_factory, s3).start(**creds(s3))
    sent = send(p, 4, 150)
    p.wait_sinks_caught_up(timeout=60)
    got = object_records(s3)
    assert_each_once(got, sent, p.dump())
    keys = {k for k, _ in got}
    assert {KEY_RE.match(k)["topic"] for k in keys} == {"telemetry", "logs", "0"}
    assert len(keys) >= 600 // 50, "objects close at batch_records"
    st = sinks(p)["s3"]
    assert st["state"] == "running" and st["type"] == "cloud" and st["records"] == 600
    assert st["failures"] == 0 and st["lag_bytes"] == 0
    # nothing is held back once the batches closed: the offset is at the end
    assert st["committed_lsn"] == p.stats()["durable_lsn"]
