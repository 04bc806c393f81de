"""A damaged log tail: recovery cuts it, --replay names it, --repair cuts it."""
import os

from conftest import assert_exactly_once


def segments(p):
    return sorted((p.data / "wal").glob("*.seg"))


def log_end(p):
    """(last segment, file offset where its data ends): segments are
    preallocated, so the log ends before the file does."""
    r = p.replay()
    end = int(r.stderr.rsplit("log ends at LSN ", 1)[1].split(":")[0])
    seg = segments(p)[-1]
    return seg, 64 + end - int(seg.name[:20])


def test_torn_write_after_the_last_commit_is_cut_and_nothing_acked_is_lost(pipeline_factory):
    p = pipeline_factory().start()
    assert p.send("torn", 5000).returncode == 0
    p.stop()
    seg, end = log_end(p)
    # what a write cut short by a crash leaves: the start of a record
    torn = b"\x11\x22\x33\x44\x90\x00\x00\x00\x01\x04\x00\x00" + b"\xab" * 30
    with open(seg, "r+b") as f:
        f.seek(end)
        f.write(torn)
    r = p.replay()
    assert r.returncode == 1 and seg.name in r.stderr and f"offset {end}" in r.stderr, r.stderr
    p.start()
    with open(seg, "rb") as f:
        f.seek(end)
        assert f.read(len(torn)) == bytes(len(torn)), "recovery zeroed the torn record"
    assert p.counter("flusherd", "recovery_cut_bytes") == len(torn)
    assert p.send("torn", 10).returncode == 0
    p.stop()
    assert_exactly_once(p.dump(), {"torn": 5010})


def test_torn_tail_is_named_by_replay_and_cut_by_repair(pipeline_factory):
    p = pipeline_factory().start()
    # two runs: at least two writes, so the damage hits the last one only
    assert p.send("trunc", 1000).returncode == 0
    assert p.send("trunc", 1000).returncode == 0
    p.stop()
    seg, end = log_end(p)
    # the last write's end never reached the disk
    with open(seg, "r+b") as f:
        f.seek(end - 20)
        f.write(bytes(20))
    r = p.replay()
    assert r.returncode == 1 and seg.name in r.stderr and "bad record" in r.stderr, r.stderr
    r = p.replay("--repair")
    assert r.returncode == 0 and "cut" in r.stderr, r.stderr
    r = p.replay()
    assert r.returncode == 0 and "whole" in r.stderr, r.stderr
    recs = p.dump()
    seqs = sorted(x["seq"] for x in recs)
    # cut where recovery would: at the end of the last whole write
    assert seqs == list(range(1, len(seqs) + 1)) and 1000 <= len(seqs) < 2000
    # the pipeline starts on the repaired log and goes on from its end
    p.start()
    with p.client("trunc") as c:
        assert c.hello() == len(seqs)


def test_bit_flip_in_a_record_is_detected_and_cut(pipeline_factory):
    p = pipeline_factory().start()
    assert p.send("flip", 3000).returncode == 0
    p.stop()
    recs = p.dump()
    victim = recs[-2]                          # damage before the end of the log
    seg = segments(p)[-1]
    first = int(seg.name[:20])
    off = 64 + (victim["lsn"] - first) + 40 + len("flip") + 3
    with open(seg, "r+b") as f:
        f.seek(off)
        b = f.read(1)
        f.seek(off)
        f.write(bytes([b[0] ^ 0x10]))
    r = p.replay("--dump")
    rec_off = 64 + victim["lsn"] - first
    assert r.returncode == 1 and f"{seg.name}: offset {rec_off}" in r.stderr and "bad record" in r.stderr, r.stderr
    assert '"crc_ok":false' in r.stdout and f'"seq":{victim["seq"]}' in r.stdout.splitlines()[-1]
    assert p.replay("--repair").returncode == 0
    after = [x["seq"] for x in p.dump()]
    assert after == list(range(1, len(after) + 1)) and len(after) < victim["seq"]
    # a restart keeps exactly what the repair kept
    p.start()
    with p.client("flip") as c:
        assert c.hello() == len(after)
    assert p.send("flip", 5).returncode == 0


def test_replay_names_damage_inside_the_log_that_recovery_does_not_read(pipeline_factory):
    # recovery reads only what follows the last checkpoint (fast restarts);
    # --replay is the whole-log check and must find older damage
    p = pipeline_factory(wal__segment_bytes="1M").start()
    assert p.send("mid", 20000, size=100).returncode == 0
    p.stop()
    segs = segments(p)
    assert len(segs) >= 2
    with open(segs[0], "r+b") as f:
        f.seek(64 + 100)
        f.write(b"\xff\xff\xff\xff")
    r = p.replay()
    assert r.returncode == 1 and f"{segs[0].name}: offset" in r.stderr and "DAMAGED" in r.stderr, r.stderr
    p.start()
    assert p.send("mid", 10).returncode == 0


def test_repair_refuses_while_flusherd_runs(pipeline):
    r = pipeline.replay("--repair")
    assert r.returncode == 2 and "stop the pipeline first" in r.stderr


def test_lowering_segment_bytes_on_an_existing_log_rotates_and_sinks(pipeline_factory, tmp_path):
    p = pipeline_factory(wal__segment_bytes="8M").start()
    assert p.send("shrink", 20000).returncode == 0
    p.stop()
    p.ini.write_text(p.ini.read_text().replace("segment_bytes = 8M", "segment_bytes = 1M"))
    p.start()
    assert p.send("shrink", 40000, size=100).returncode == 0
    sizes = [s.stat().st_size for s in segments(p)]
    assert len(sizes) > 3 and max(sizes[1:]) <= (1 << 20) + 64, sizes
    assert " died: " not in p.log.read_text()
    p.wait_sinks_caught_up()
    from conftest import assert_exactly_once
    assert_exactly_once(p.disk_entries(), {"shrink": 60000})


def test_recovery_refuses_a_log_that_ends_before_its_checkpoint(pipeline_factory):
    p = pipeline_factory().start()
    assert p.send("short", 3000).returncode == 0
    p.stop()
    os.truncate(segments(p)[-1], 1000)
    from conftest import BIN
    r = p.run(BIN / "flusherd", "-c", p.ini, timeout=20)
    # a start-up failure (exit 2): restarting cannot mend the log
    assert r.returncode == 2 and "ends before its checkpoint" in r.stdout + r.stderr
