"""Retention: [wal] retain_bytes retires whole segments, oldest first, once
every sink instance of [sinkd] sinks has committed past them; retired
segments are recycled as the next segment's file.

Segments of 1 MiB, a 4 MiB limit.  Every wait is on an event (a counter, the
file list, a log line), never on a speed.
"""
import os
import signal
import struct
import zlib

import pytest

from conftest import BIN, assert_exactly_once, wait_for

MIB = 1 << 20
LIMIT = 4 * MIB
SEG_FILE = MIB + 64
RETAIN = dict(wal__retain_bytes="4M", wal__segment_bytes="1M")
ROUND = 7000                      # frames of 100 bytes: about one segment


def segments(p):
    """[(first_lsn, path)] of the WAL's segments, oldest first."""
    return sorted((int(f.name[:20]), f) for f in (p.data / "wal").glob("*.seg"))


def seg_bytes(p):
    total = 0
    for _, f in segments(p):
        try:
            total += f.stat().st_size
        except FileNotFoundError:     # retired meanwhile
            pass
    return total


def first_lsn(p):
    s = segments(p)
    return s[0][0] if s else None


def seg_flags(path):
    with open(path, "rb") as f:
        hdr = f.read(64)
    return struct.unpack_from("<I", hdr, 40)[0]


def offset_lsn(p, name):
    b = (p.data / "sinks" / f"{name}.offset").read_bytes()
    assert b[:8] == b"MISINKO1"
    return struct.unpack_from("<Q", b, 8)[0]


def write_offset(p, name, lsn):
    """An offset file as sinkd writes it (docs/FORMATS.md)."""
    d = p.data / "sinks"
    d.mkdir(parents=True, exist_ok=True)
    h = b"MISINKO1" + struct.pack("<QI", lsn, 0)
    (d / f"{name}.offset").write_bytes(h + struct.pack("<I", zlib.crc32(h)))


def log_text(p):
    return p.log.read_text(errors="replace")


def send_rounds(p, device, rounds, count=ROUND):
    for _ in range(rounds):
        r = p.send(device, count)
        assert r.returncode == 0, r.stderr
        p.wait_sinks_caught_up(60)
    return rounds * count


def retained_seqs(p, device):
    """The device's seqs in the log (stopped pipeline), checked: each once,
    contiguous, in LSN order."""
    seqs = [r["seq"] for r in p.dump() if r["device"] == device]
    assert len(seqs) == len(set(seqs)), "a seq is in the log twice"
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), "a gap in the retained log"
    return seqs


def counter(p, name):
    return p.counter("flusherd", name)


def test_log_settles_at_its_limit_and_what_is_left_is_whole(pipeline_factory):
    p = pipeline_factory(**RETAIN).start()
    n = send_rounds(p, "keep", 3, 3 * ROUND)            # ~9 segments, well over the limit
    wait_for(lambda: counter(p, "retired_segments") > 0, 60, "a retirement")
    wait_for(lambda: seg_bytes(p) <= LIMIT + 2 * SEG_FILE, 60, "the log down to its limit")
    assert counter(p, "retired_bytes") >= counter(p, "retired_segments") * 64
    assert "retention: retired " in log_text(p)
    p.stop()
    assert seg_bytes(p) <= LIMIT + 2 * SEG_FILE
    start = first_lsn(p)
    assert start > 0
    r = p.replay()
    assert r.returncode == 0 and "whole" in r.stderr and f" from LSN {start}," in r.stderr, r.stderr
    seqs = retained_seqs(p, "keep")
    assert seqs[0] > 1 and seqs[-1] == n              # the start retired, the rest once each
    assert_exactly_once(p.disk_entries(), {"keep": n})  # the sink got everything, once

    # flusherd starts again on the retired log, and recovers after a kill
    p.start()
    old = p.kill("flusherd")
    p.wait_restarted("flusherd", old)
    n += send_rounds(p, "keep", 2, 2 * ROUND)
    wait_for(lambda: first_lsn(p) > start, 60, "retention to go on")
    p.stop()
    assert p.replay().returncode == 0
    seqs = retained_seqs(p, "keep")
    assert seqs[-1] == n
    assert_exactly_once(p.disk_entries(), {"keep": n})


def test_a_stopped_sink_holds_retention_until_it_catches_up(pipeline_factory):
    p = pipeline_factory(**RETAIN).start()
    n = send_rounds(p, "held", 1, 2 * ROUND)            # within the limit
    sinkd = p.kill("sinkd", signal.SIGSTOP)
    try:
        held = offset_lsn(p, "disk")
        assert held > 0
        n += send_rounds_nowait(p, "held", 6)
        # retention ran with the log over its limit and stopped at the sink
        wait_for(lambda: f"sink instance disk (committed LSN {held}) holds the log" in log_text(p), 60,
                 "retention to find the stopped sink holding the log")
        segs = segments(p)
        assert segs[0][0] <= held, "a segment the stopped sink had not passed was retired"
        holding = [lsn for lsn, _ in segs if lsn <= held][-1]
        assert seg_bytes(p) > LIMIT
    finally:
        os.kill(sinkd, signal.SIGCONT)
    p.wait_sinks_caught_up(60)
    wait_for(lambda: first_lsn(p) > holding, 60, "retention past the sink's old offset")
    wait_for(lambda: seg_bytes(p) <= LIMIT + 2 * SEG_FILE, 60, "the log down to its limit")
    p.stop()
    seqs = retained_seqs(p, "held")
    assert seqs[-1] == n
    assert_exactly_once(p.disk_entries(), {"held": n})


def send_rounds_nowait(p, device, rounds, count=ROUND):
    """Sends without waiting for the sinks (one may be stopped)."""
    for _ in range(rounds):
        r = p.send(device, count)
        assert r.returncode == 0, r.stderr
    return rounds * count


def test_a_sink_with_no_offset_yet_holds_the_whole_log(pipeline_factory):
    # sinkd commits only at a clean stop: no offset file meanwhile
    p = pipeline_factory(**RETAIN, sinkd__commit_ms="3600000").start()
    n = send_rounds_nowait(p, "nooff", 4)
    wait_for(lambda: "sink instance disk (committed LSN 0) holds the log from LSN 0" in log_text(p), 60,
             "retention to find the sink holding the log")
    assert "sink instance disk has no committed offset yet" in log_text(p)
    assert first_lsn(p) == 0 and counter(p, "retired_segments") == 0
    # a clean stop commits it; the supervisor starts it again
    old = p.kill("sinkd", signal.SIGTERM)
    p.wait_restarted("sinkd", old)
    wait_for(lambda: first_lsn(p) > 0, 60, "retention once the sink committed")
    p.stop()
    assert retained_seqs(p, "nooff")[-1] == n


def test_an_instance_removed_from_the_config_no_longer_holds(pipeline_factory):
    p = pipeline_factory(**RETAIN)
    write_offset(p, "cloud", 0)                         # a sink instance that used to run
    p.start()
    send_rounds(p, "gone", 3, 2 * ROUND)
    wait_for(lambda: first_lsn(p) > 0, 60, "retention despite cloud.offset at LSN 0")
    text = log_text(p)
    line = "sink instance cloud is not in [sinkd] sinks any more: it no longer holds retention"
    assert text.count(line) == 1, text


def test_retired_segments_are_recycled_and_a_crash_on_one_recovers(pipeline_factory):
    p = pipeline_factory(**RETAIN).start()
    n = 0
    # one segment at a time, the sinks caught up after each, until a
    # rotation has taken a recycled segment
    for _ in range(40):
        n += send_rounds(p, "recy", 1)
        if counter(p, "recycled_segments") > 0 and seg_flags(segments(p)[-1][1]) & 1:
            break
    assert counter(p, "recycled_segments") > 0
    # a crash at rest on a recycled active segment with room left
    for _ in range(40):
        first, active = segments(p)[-1]
        if seg_flags(active) & 1 and first + MIB - counter(p, "durable_lsn") > 400 << 10:
            break
        n += send_rounds(p, "recy", 1, ROUND // 4)
    assert seg_flags(active) & 1, "the active segment is a recycled file"
    n += send_rounds(p, "recy", 1, 1000)
    assert segments(p)[-1][1] == active
    before = p.recoveries()
    old = p.kill("flusherd")
    p.wait_restarted("flusherd", old)
    wait_for(lambda: p.recoveries() > before, 30, "flusherd's recovery")
    n += send_rounds(p, "recy", 1, 1000)
    # and one while writing, wherever it lands
    s = p.send_async("recy", 3 * ROUND)
    wait_for(lambda: counter(p, "durable_lsn") > first + 8192, 60, "writes")
    old = p.kill("flusherd")
    p.wait_restarted("flusherd", old)
    out, err = s.communicate(timeout=120)
    assert s.returncode == 0, err
    n += 3 * ROUND
    p.wait_sinks_caught_up(60)
    p.stop()
    r = p.replay()
    assert r.returncode == 0 and "whole" in r.stderr, r.stderr
    assert retained_seqs(p, "recy")[-1] == n
    assert_exactly_once(p.disk_entries(), {"recy": n})


SKIP = {"topics__telemetry": 1, "topics__logs": 2, "sinkd__sinks": "disk, slow",
        "sink.slow__process": "own", "sink.slow__topics": "telemetry",
        "sink.slow__lag_policy": "skip", "sink.slow__lag_cap_bytes": "2M"}


def slot(p, name):
    return {s["name"]: s for s in p.stats()["sinks"]}[name]


def counted(p, name):
    """records in the count sink's file: what it committed."""
    f = p.data / "sinks" / f"{name}.count"
    return int(f.read_text().split()[1]) if f.exists() else 0


def send_mixed(p, rounds, count=ROUND // 2):
    """Rounds of telemetry (topic 1, the slow instance's) and logs (topic 2);
    returns the telemetry records sent."""
    for _ in range(rounds):
        assert p.send("tele", count, extra=("-t", 1)).returncode == 0
        assert p.send("logs", count, extra=("-t", 2)).returncode == 0
    return rounds * count


def stop_behind(p, name):
    """Sends telemetry until the log ends well inside a segment, waits for
    the instance to catch up, SIGSTOPs its own process; returns (pid, its
    committed LSN, the records sent)."""
    sent = 0
    while True:
        first = max(lsn for lsn, _ in segments(p))
        end = p.stats()["durable_lsn"]
        if end - first > 64 << 10 and first + MIB - end > 64 << 10:
            break
        assert p.send("tele", 100, extra=("-t", 1)).returncode == 0
        sent += 100
    wait_for(lambda: slot(p, name)["committed_lsn"] == p.stats()["durable_lsn"], 60, f"{name} caught up")
    pid = slot(p, name)["pid"]
    os.kill(pid, signal.SIGSTOP)
    held = offset_lsn(p, name)
    assert held not in [lsn for lsn, _ in segments(p)], "the offset is inside a segment"
    return pid, held, sent


def test_a_skip_instance_is_passed_by_retention_and_counts_what_it_skipped(pipeline_factory, count_so):
    p = pipeline_factory(**RETAIN, **SKIP, **{"sink.slow__type": str(count_so)}).start()
    tele = logs = send_mixed(p, 1)
    # stopped with its segment mapped: retention unlinks that one (never
    # recycles it), and the instance delivers the rest of it when it runs again
    pid, held, n = stop_behind(p, "slow")
    tele += n
    try:
        n = send_mixed(p, 6)                           # ~6 segments: far over its 2 MiB cap
        tele, logs = tele + n, logs + n
        wait_for(lambda: first_lsn(p) > held + 2 * MIB, 60, "retention to pass the stopped instance")
        assert "retention: sink instance slow (committed LSN" in log_text(p)
        assert "retention passes it" in log_text(p)
        wait_for(lambda: slot(p, "disk")["lag_bytes"] == 0, 60, "the hold instance to keep up meanwhile")
    finally:
        os.kill(pid, signal.SIGCONT)
    # then it skips to the log's first record, counting the telemetry
    # records that retired from the ledger flusherd wrote
    wait_for(lambda: "sink slow: within lag_cap_bytes again" in log_text(p), 60, "the episode's end")
    wait_for(lambda: slot(p, "slow")["committed_lsn"] == p.stats()["durable_lsn"], 60, "slow caught up")
    s = slot(p, "slow")
    assert s["state"] == "running" and s["skipped_bytes"] > 0 and s["skipped_records"] > 0
    assert counted(p, "slow") + s["skipped_records"] == tele, (counted(p, "slow"), s)
    assert log_text(p).count("was retired before it was delivered (lag_policy = skip") == 1
    skipped1 = s["skipped_records"]

    # killed while behind: it resumes from an offset inside a retired
    # segment, and the ledger counts from exactly there
    pid, held, n = stop_behind(p, "slow")
    tele += n
    n = send_mixed(p, 6)
    tele, logs = tele + n, logs + n
    wait_for(lambda: first_lsn(p) > held + 2 * MIB, 60, "retention to pass it again")
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: slot(p, "slow")["pid"] not in (0, pid), 30, "sinkd --only slow restarted")
    wait_for(lambda: slot(p, "slow")["committed_lsn"] == p.stats()["durable_lsn"] and
             slot(p, "slow")["skipped_records"] > 0, 60, "slow caught up after its restart")
    skipped2 = slot(p, "slow")["skipped_records"]
    assert counted(p, "slow") + skipped1 + skipped2 == tele
    assert "no ledger counted" not in log_text(p)
    p.stop()
    assert p.replay().returncode == 0
    assert_exactly_once(p.disk_entries(), {"tele": tele, "logs": logs})   # the hold instance: all, once


def test_a_new_instance_starts_at_the_oldest_record_held(pipeline_factory, count_so):
    p = pipeline_factory(**RETAIN).start()
    n = send_rounds(p, "early", 3, 2 * ROUND)
    wait_for(lambda: first_lsn(p) > 0, 60, "retention")
    p.stop()
    held = len(retained_seqs(p, "early"))
    assert held < n
    p.set(sinkd__sinks="disk, late", **{"sink.late__type": str(count_so)})
    p.start()
    assert p.send("after", 100).returncode == 0
    wait_for(lambda: counted(p, "late") == held + 100, 60, "the new instance to count the log")
    text = log_text(p)
    assert "sink late: a new instance, and the log starts at LSN" in text
    assert "was retired before it was delivered" not in text
    assert slot(p, "late")["skipped_records"] == 0


@pytest.mark.parametrize("extra,msg", [
    ({"sink.disk__lag_policy": "drop"}, "[sink.disk] lag_policy = 'drop': use hold or skip"),
    ({"sink.disk__lag_policy": "skip"}, "[sink.disk] lag_policy = skip needs lag_cap_bytes"),
    ({"sink.disk__lag_cap_bytes": "lots"}, "lag_cap_bytes"),
])
def test_bad_lag_keys_stop_flusherd_and_sinkd_naming_them(pipeline_factory, extra, msg):
    p = pipeline_factory(**extra)
    for stage in ("flusherd", "sinkd"):
        r = p.run(BIN / stage, "-c", p.ini, timeout=30)
        assert r.returncode == 2 and msg in r.stderr, (stage, r.stderr)
