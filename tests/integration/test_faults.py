"""Deterministic crash points (common/fault.h): a stage SIGKILLs itself at the
worst moment once, the supervisor restarts it, and the stream goes on with
nothing lost and nothing stored twice."""
import pytest

from conftest import assert_exactly_once, wait_for

POINTS = [
    ("flusherd.after_write", 3),        # in the WAL, not synced, still in the ring
    ("flusherd.after_sync", 3),         # synced, not yet published: no ACK went out
    ("flusherd.after_release", 3),      # ring space and device seqs published (ACKs may go out), LSN not
    ("ingestd.after_store", 5000),       # seq noted, record not yet visible in the ring
    ("ingestd.after_publish", 5),       # in the ring, no ACK sent
    ("sinkd.after_deliver", 3),          # in the sink's buffers, not committed
    ("sinkd.after_sink_commit", 2),      # sink files synced, offset not stored
]


def stream_through_fault(p, tmp_path, point, nth, devices, rate):
    """Starts p with the fault armed once and streams from every device
    until the point was reached, its stage restarted and every device got
    frames durable past where it stood then (a restarted sinkd: committed
    past the log's end then).  Every frame must be acknowledged: returns
    {device: last seq}."""
    marker = tmp_path / "fired"
    p.start(MI_FAULT=f"{point}:{nth}:{marker}")
    stage = point.split(".")[0]
    streams = [p.stream(d, size=80, rate=rate) for d in devices]

    def fired():
        for s in streams:
            s.assert_running()
        return marker.exists()
    wait_for(fired, 60, f"{point} to be reached")
    durable = {s.device: s.durable() for s in streams}
    lsn = p.stats()["durable_lsn"]
    wait_for(lambda: p.stats()["stages"][stage]["restarts"] >= 1, 30, f"{stage} restarted")
    for s in streams:
        s.wait_durable(durable[s.device] + 1)
    if stage == "sinkd":
        wait_for(lambda: min(k["committed_lsn"] for k in p.stats()["sinks"]) > lsn, 30,
                 "the restarted sinkd to commit")
    last = {s.device: s.stop() for s in streams}
    assert all(s.first == 1 for s in streams)
    return last


@pytest.mark.parametrize("point,nth", POINTS, ids=[p for p, _ in POINTS])
def test_crash_at_point_loses_and_repeats_nothing(pipeline_factory, tmp_path, point, nth):
    p = pipeline_factory(sinkd__commit_ms=20)
    devices = stream_through_fault(p, tmp_path, point, nth, ("fp-0", "fp-1"), rate=200000)
    assert f"fault: {point} reached" in p.log.read_text()
    assert_exactly_once(p.dump(), devices)
    p.wait_sinks_caught_up(timeout=30)
    assert_exactly_once(p.disk_entries(), devices)


def test_a_batch_synced_but_not_yet_published_durable_is_kept_by_recovery(pipeline_factory, tmp_path):
    # released and last_durable are out (ingestd may ACK, and refills the
    # ring's freed space) but durable_lsn is not: recovery must keep that
    # synced batch, not cut it and count on the ring, which no longer holds
    # it on a small ring under load (six streams at full speed, each with
    # 4096 frames in flight: ~3 MB against 1 MiB while flusherd restarts)
    p = pipeline_factory(shm__ring_bytes="1M", wal__commit_bytes="256K")
    devices = stream_through_fault(p, tmp_path, "flusherd.after_release", 2,
                                   [f"rel-{i}" for i in range(6)], rate=None)
    assert p.recoveries() >= 2
    log = p.log.read_text()
    assert "records were lost" not in log
    rec = [l for l in log.splitlines() if " recovered " in l][1]   # the restart's
    assert " 0 bytes cut from the tail" in rec, rec
    assert_exactly_once(p.dump(), devices)
