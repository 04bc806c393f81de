"""Sink instances: named, filtered by topic, isolated from each other, loaded
from shared objects, and each in a process of its own when asked."""
import subprocess

import pytest

from conftest import BIN, ROOT, assert_exactly_once, wait_for

TOPICS = {"topics__telemetry": 1, "topics__logs": 2}


def entries(p, d):
    """A disk instance's entries in directory d: {topic: [entry]}."""
    out = {}
    for e in p.disk_entries(d):
        out.setdefault(e["topic"], []).append(e)
    return out


def sinks(p):
    return {s["name"]: s for s in p.stats()["sinks"]}


def test_two_disk_instances_split_by_topic_each_get_exactly_theirs(pipeline_factory, tmp_path):
    p = pipeline_factory(**TOPICS, sinkd__sinks="tele, rest",
                         **{"sink.tele__type": "disk", "sink.tele__topics": "telemetry",
                            "sink.tele__dir": tmp_path / "tele",
                            "sink.rest__type": "disk", "sink.rest__topics": "logs, 0",
                            "sink.rest__batch_records": 7}).start()
    assert p.send("t1", 300, extra=("-t", 1)).returncode == 0
    assert p.send("t2", 200, extra=("-t", 2)).returncode == 0
    assert p.send("t0", 100).returncode == 0
    p.wait_sinks_caught_up()
    tele = entries(p, tmp_path / "tele")
    rest = entries(p, p.data / "sinks" / "rest")
    assert set(tele) == {1} and set(rest) == {0, 2}
    assert_exactly_once(tele[1], {"t1": 300})
    assert_exactly_once(rest[2] + rest[0], {"t2": 200, "t0": 100})
    st = sinks(p)
    assert st["tele"]["records"] == 300 and st["rest"]["records"] == 300
    assert st["tele"]["type"] == "disk" and st["tele"]["state"] == "running"
    assert st["tele"]["lag_bytes"] == 0 and st["rest"]["failures"] == 0


@pytest.mark.parametrize("extra,msg", [
    ({"sink.a__dri": "/x"}, "unknown key 'dri' in section [sink.a]"),
    ({"sink.a__type": "nosuch"}, "[sink.a] type = 'nosuch': no such sink (built in: disk"),
    ({"sink.a__topics": "telemetry, nope"}, "[sink.a] topics: 'nope' is neither a topic id"),
    ({"sink.b__type": "disk"}, "[sink.b]: no instance 'b' in [sinkd] sinks"),
    ({"sink_disk__dir": "/x"}, "[sink_disk]: sinks are named instances now"),
])
def test_bad_instance_config_stops_sinkd_naming_it(pipeline_factory, extra, msg):
    p = pipeline_factory(**TOPICS, sinkd__sinks="a", **{"sink.a__type": "disk", **extra})
    r = p.run(BIN / "sinkd", "-c", p.ini, timeout=30)
    assert r.returncode == 2 and msg in r.stderr, r.stderr


def test_an_instance_key_is_overridden_from_the_environment(pipeline_factory, tmp_path):
    p = pipeline_factory(sinkd__sinks="hot", **{"sink.hot__type": "disk"})
    p.start(INGEST_SINK_HOT_DIR=str(tmp_path / "from-env"))
    assert p.send("env-0", 50).returncode == 0
    p.wait_sinks_caught_up()
    assert_exactly_once(entries(p, tmp_path / "from-env")[0], {"env-0": 50})


def test_a_loaded_sink_counts_what_it_is_given_and_resumes_its_count(pipeline_factory, count_so):
    p = pipeline_factory(**TOPICS, sinkd__sinks="disk, counted",
                         **{"sink.counted__type": str(count_so), "sink.counted__topics": "telemetry",
                            "sink.counted__fail_every": 5, "sink.counted__batch_records": 10}).start()
    assert p.send("c1", 400, size=50, extra=("-t", 1)).returncode == 0
    assert p.send("c2", 100, size=50, extra=("-t", 2)).returncode == 0
    p.wait_sinks_caught_up()
    counted = p.data / "sinks" / "counted.count"
    assert counted.read_text().split()[:4] == ["records", "400", "bytes", "20000"]
    # 400 records in batches of at most 10: 40 deliveries or more, every 5th refused
    assert sinks(p)["counted"]["retries"] >= 8, "fail_every made some deliveries RETRY"
    # a restart resumes from the blob: nothing counted twice
    old = p.kill("sinkd")
    p.wait_restarted("sinkd", old)
    assert p.send("c1", 100, size=50, extra=("-t", 1)).returncode == 0
    p.wait_sinks_caught_up()
    assert counted.read_text().split()[:2] == ["records", "500"]


def test_a_sink_that_cannot_load_stops_alone_and_says_why(pipeline_factory, tmp_path, count_so):
    bad = tmp_path / "abi99.c"
    bad.write_text('#include "sink.h"\n'
                   'const struct sink_desc mi_sink_plugin = { .abi = 99, .name = "old" };\n')
    so = tmp_path / "abi99.so"
    subprocess.run(["cc", "-shared", "-fPIC", "-I", str(ROOT / "sinkd"), "-o", str(so), str(bad)], check=True)
    p = pipeline_factory(sinkd__sinks="old, gone, disk",
                         **{"sink.old__type": str(so), "sink.gone__type": str(tmp_path / "missing.so"),
                            "sink.gone__whatever": "its keys are not judged"}).start()
    assert p.send("alone", 200).returncode == 0
    wait_for(lambda: sinks(p)["disk"]["records"] == 200, 20, "the disk instance to deliver")
    st = sinks(p)
    assert st["old"]["state"] == "stopped" and st["gone"]["state"] == "stopped"
    assert f"{so}: built for sink ABI version 99, this sinkd speaks version 2" in st["old"]["last_error"]
    assert "missing.so: cannot load" in st["gone"]["last_error"]
    log = p.log.read_text()
    assert "sink old: type" in log and "this instance does not run (the others do)" in log


def test_a_failing_instance_does_not_hold_up_the_others(pipeline_factory, count_so):
    # every delivery of 'flaky' is refused: it retries forever, with backoff
    p = pipeline_factory(sinkd__sinks="flaky, disk",
                         **{"sink.flaky__type": str(count_so), "sink.flaky__fail_every": 1,
                            "sink.flaky__retry_min_ms": 10, "sink.flaky__retry_max_ms": 50}).start()
    assert p.send("iso", 2000).returncode == 0
    wait_for(lambda: sinks(p)["disk"]["committed_lsn"] >= p.stats()["durable_lsn"], 30,
             "the healthy instance to commit everything")
    assert_exactly_once(p.disk_entries(), {"iso": 2000})
    st = wait_for(lambda: (lambda s: s if s["retries"] >= 3 else None)(sinks(p)["flaky"]), 30,
                  "the failing instance to retry")
    assert st["state"] == "retrying" and st["records"] == 0 and st["lag_bytes"] > 0
    assert "refused on purpose" in st["last_error"]
    # its lag in records: every one of them, counted to the durable end
    wait_for(lambda: (lambda s: s["lag_records_exact"] and s["lag_records"] == 2000)(sinks(p)["flaky"]), 30,
             "the failing instance's lag to count 2000 records")
    assert sinks(p)["disk"]["lag_records"] == 0


def test_an_instance_in_its_own_process_is_run_and_restarted_by_the_supervisor(pipeline_factory, count_so):
    p = pipeline_factory(sinkd__sinks="disk, solo",
                         **{"sink.solo__type": str(count_so), "sink.solo__process": "own"}).start()
    assert p.send("own-0", 300).returncode == 0
    wait_for(lambda: sinks(p).get("solo", {}).get("records") == 300, 30, "the own-process instance")
    solo, main = sinks(p)["solo"]["pid"], p.pid("sinkd")
    assert solo and solo != main
    # killed, it comes back alone and resumes from its offset
    import os, signal
    os.kill(solo, signal.SIGKILL)
    wait_for(lambda: sinks(p)["solo"]["pid"] not in (0, solo), 20, "sinkd --only solo restarted")
    assert p.pid("sinkd") == main
    assert p.send("own-0", 100).returncode == 0
    p.wait_sinks_caught_up()
    assert (p.data / "sinks" / "solo.count").read_text().split()[:2] == ["records", "400"]
    assert_exactly_once(p.disk_entries(), {"own-0": 400})


def backfill(p, *args):
    return p.run(BIN / "sinkd", "-c", p.ini, "--backfill", *args, timeout=120)


def test_backfill_runs_an_instance_over_a_range_without_touching_its_offset(pipeline):
    p = pipeline
    assert p.send("bf", 300).returncode == 0
    p.wait_sinks_caught_up()
    mid = p.stats()["durable_lsn"]
    t_mid = subprocess.run(["date", "-u", "+%Y-%m-%dT%H:%M:%S.%NZ"], capture_output=True, text=True).stdout.strip()
    assert p.send("bf", 200).returncode == 0
    p.wait_sinks_caught_up()
    end = p.stats()["durable_lsn"]
    committed = sinks(p)["disk"]["committed_lsn"]
    # by LSN, half-open: [0, mid) is exactly the first 300
    r = backfill(p, "disk", "--from-lsn", 0, "--to-lsn", mid)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(f"backfill disk: 300 records, 30000 bytes, LSN [0, {mid})"), r.stdout
    got = entries(p, p.data / "sinks" / "disk" / f"backfill-0-{mid}")
    assert_exactly_once(got[0], {"bf": 300})
    # by server time: from the moment between the two sends to the end
    r = backfill(p, "disk", "--since", t_mid)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(f"backfill disk: 200 records, 20000 bytes, LSN [{mid}, {end})"), r.stdout
    got = entries(p, p.data / "sinks" / "disk" / f"backfill-{mid}-{end}")
    assert sorted(e["seq"] for e in got[0]) == list(range(301, 501))
    # the live instance: its files and offset as they were, each record once
    assert_exactly_once(p.disk_entries(), {"bf": 500})
    assert sinks(p)["disk"]["committed_lsn"] == committed
    # an empty range is no error
    r = backfill(p, "disk", "--since", "+1h")
    assert r.returncode == 0 and r.stdout.startswith("backfill disk: 0 records"), r.stdout + r.stderr


def test_backfill_after_a_clean_stop_reads_to_the_last_checkpoint(pipeline):
    p = pipeline
    assert p.send("bs", 250).returncode == 0
    p.stop()
    r = backfill(p, "disk", "--until", "now")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("backfill disk: 250 records"), r.stdout


@pytest.mark.parametrize("args,msg", [
    (("disk", "--since", "yesterday"), "--since 'yesterday': not a time"),
    (("disk", "--from-lsn", "-3"), "--from-lsn '-3': not an LSN"),
    (("nosuch",), "--backfill nosuch: no such instance"),
    (("disk", "--from-lsn", "5"), "--from-lsn 5: not where a record starts"),
])
def test_backfill_refuses_a_bad_range_naming_it(pipeline, args, msg):
    assert pipeline.send("bb", 10).returncode == 0
    r = backfill(pipeline, *args)
    assert r.returncode == 2 and msg in r.stderr, r.stderr


def test_backfill_of_a_retired_range_names_the_first_record_still_held(pipeline_factory):
    p = pipeline_factory(wal__segment_bytes="1M").start()
    assert p.send("ret", 30000, size=100).returncode == 0
    p.stop()
    segs = sorted((p.data / "wal").glob("*.seg"))
    assert len(segs) >= 3
    segs[0].unlink()          # as retention retires the oldest segment
    first = int(segs[1].name.split(".")[0])
    r = backfill(p, "disk", "--from-lsn", 0)
    assert r.returncode == 2, r.stderr
    assert f"retired everything before LSN {first} (server time 20" in r.stderr, r.stderr
