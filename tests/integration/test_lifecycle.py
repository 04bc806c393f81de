"""The pipeline's start and stop: the shared-memory region's lifecycle, the
supervisor's start limit and its ordered shutdown."""
import os
import signal
import subprocess
from pathlib import Path

import pytest

from conftest import BIN, ROOT, Pipeline, assert_exactly_once, wait_gone


@pytest.fixture
def elsewhere(tmp_path):
    """A pipeline of its own directory (its own config, log and data), as
    a second checkout of the project has."""
    made = []

    def make(**overrides):
        d = tmp_path / f"checkout{len(made) + 2}"
        d.mkdir()
        p = Pipeline(d, **overrides)
        made.append(p)
        return p
    yield make
    for p in made:
        p.close()


def region(instance):
    return Path(f"/dev/shm/module-ingest.{instance}")


def crash_everything(p):
    """Every stage and the supervisor die at once, as in a power cut of the
    processes (not of the disk): nothing stops cleanly."""
    pids = [p.pid(s) for s in ("ingestd", "flusherd", "sinkd")]
    os.kill(p.proc.pid, signal.SIGSTOP)        # no restarts meanwhile
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    os.kill(p.proc.pid, signal.SIGKILL)
    p.proc.wait()
    p.proc = None
    wait_gone(pids, 10, "the stages to be gone")


def supervise_to_the_end(p):
    """run/supervise on p's config, for a pipeline that is to stop by itself:
    its exit status."""
    with open(p.log, "wb") as log:
        sup = subprocess.Popen([str(ROOT / "run" / "supervise"), "-c", str(p.ini), "-b", str(BIN)],
                               stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            return sup.wait(60)
        finally:
            if sup.poll() is None:
                os.killpg(sup.pid, signal.SIGKILL)


def test_clean_stop_leaves_no_region_and_a_changed_geometry_simply_applies(pipeline_factory, tmp_path):
    p = pipeline_factory().start()
    assert p.send("life-0", 100).returncode == 0
    assert region(p.instance).exists()
    p.stop()
    assert not region(p.instance).exists(), "a clean stop must remove the shm region"
    assert "removed (the last stage out)" in p.log.read_text()
    # a new ring size after a clean stop: no complaint, the same log
    p.ini.write_text(p.ini.read_text().replace("ring_bytes = 16M", "ring_bytes = 8M"))
    p.start()
    assert "created for 1 ring(s) of 8388608 bytes" in p.log.read_text()
    assert p.send("life-0", 100).returncode == 0
    assert_exactly_once(p.dump(), {"life-0": 200})


def test_after_a_crash_a_region_of_another_geometry_is_made_anew_and_nothing_acked_is_lost(pipeline_factory):
    p = pipeline_factory().start()
    assert p.send("geo-0", 500).returncode == 0
    crash_everything(p)
    assert region(p.instance).exists(), "a crash leaves the region (it carries the rings on)"
    p.ini.write_text(p.ini.read_text().replace("devices = 4096", "devices = 8192"))
    p.start()
    log = p.log.read_text()
    assert "config needs" in log and "discarded and made anew" in log, log[-3000:]
    # the device table was rebuilt from the log: the device resumes after 500
    assert p.send("geo-0", 500).returncode == 0
    assert_exactly_once(p.dump(), {"geo-0": 1000})


def test_after_a_crash_an_emptied_data_dir_gets_a_new_region(pipeline_factory):
    p = pipeline_factory().start()
    assert p.send("empty-0", 300).returncode == 0
    crash_everything(p)
    subprocess.run(["rm", "-rf", str(p.data / "wal"), str(p.data / "meta"), str(p.data / "devices"),
                    str(p.data / "sinks")], check=True)
    p.start()
    log = p.log.read_text()
    assert "another log" in log and "discarded and made anew" in log, log[-3000:]
    # a new log knows nothing of the old device: its seqs start again at 1
    assert p.send("empty-0", 10).returncode == 0
    assert_exactly_once(p.dump(), {"empty-0": 10})


def test_after_a_crash_a_second_checkout_with_the_same_instance_starts(pipeline_factory, elsewhere):
    first = pipeline_factory().start()
    assert first.send("co-1", 50).returncode == 0
    crash_everything(first)
    second = elsewhere(instance__name=first.instance)
    second.instance = first.instance
    second.start()
    log = second.log.read_text()
    assert "it was made for data dir" in log and "discarded and made anew" in log, log[-3000:]
    assert second.send("co-2", 50).returncode == 0
    assert_exactly_once(second.dump(), {"co-2": 50})


def test_a_second_pipeline_with_the_same_instance_is_refused_and_the_first_runs_on(pipeline_factory, elsewhere):
    first = pipeline_factory().start()
    second = elsewhere(instance__name=first.instance)
    second.instance = "not-" + first.instance   # its cleanup must not touch the first's region
    assert supervise_to_the_end(second) == 1
    text = second.log.read_text()
    last = text.strip().splitlines()[-1]
    # whichever stage gave up first says who holds the instance
    assert "could not start 3 times in a row" in last, text[-3000:]
    assert f"instance '{first.instance}' is in use" in last
    assert str(first.pid("flusherd")) in last and str(first.data) in last
    assert "INGEST_INSTANCE_NAME" in last and "[instance] name" in last
    # the first pipeline neither noticed nor stopped
    assert first.send("still-here", 100).returncode == 0
    assert_exactly_once(first.dump(), {"still-here": 100})


def test_sigint_to_the_process_group_stops_in_order_and_exits_0(pipeline):
    assert pipeline.send("int-dev", 1000).returncode == 0
    pids = {s: pipeline.pid(s) for s in ("ingestd", "flusherd", "sinkd")}
    # what a terminal's Ctrl-C does: SIGINT to every process of the group
    os.killpg(pipeline.proc.pid, signal.SIGINT)
    assert pipeline.proc.wait(60) == 0
    pipeline.proc = None
    log = pipeline.log.read_text()
    order = [log.index(f"supervise[{pipeline_pid(log)}] info: {s} stopped") for s in ("ingestd", "flusherd", "sinkd")]
    assert order == sorted(order), log[-3000:]
    assert log.strip().splitlines()[-1].endswith("stopped (SIGINT): every stage exited cleanly")
    # each stage stopped when the supervisor told it, not at the Ctrl-C
    for s, pid in pids.items():
        assert f"{s}[{pid}] info: stopped" in log
    assert not region(pipeline.instance).exists()
    assert_exactly_once(pipeline.dump(), {"int-dev": 1000})


def pipeline_pid(log):
    line = next(l for l in log.splitlines() if " supervise[" in l)
    return int(line.split(" supervise[", 1)[1].split("]", 1)[0])


def test_a_stage_that_cannot_start_stops_the_pipeline_with_its_message(pipeline_factory):
    p = pipeline_factory()
    p.ini.write_text(p.ini.read_text() + "\n[wal]\ncommit_byts = 1M\n")
    assert supervise_to_the_end(p) == 1
    last = p.log.read_text().strip().splitlines()[-1]
    assert "could not start 3 times in a row" in last and "commit_byts" in last, last
