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


def stream_through_fault(p, tmp_path, point, nth, devices):
    """Starts p with the fault armed once and sends every device's frames,
    all of which must be acknowledged."""
    marker = tmp_path / "fired"
    p.start(MI_FAULT=f"{point}:{nth}:{marker}")
    procs = [p.send_async(d, n, size=80, timeout=60) for d, n in devices.items()]
    for s in procs:
        out, err = s.communicate(timeout=120)
        assert s.returncode == 0, err
    assert marker.exists(), f"{point} was never reached"


@pytest.mark.parametrize("point,nth", POINTS, ids=[p for p, _ in POINTS])
def test_crash_at_point_loses_and_repeats_nothing(pipeline_factory, tmp_path, point, nth):
    p = pipeline_factory(sinkd__commit_ms=20)
    devices = {f"fp-{i}": 30000 for i in range(2)}
    stream_through_fault(p, tmp_path, point, nth, devices)
    stage = point.split(".")[0]
    wait_for(lambda: p.stats()["stages"][stage]["restarts"] >= 1, 10, f"{stage} restarted")
    assert f"fault: {point} reached" in p.log.read_text()
    assert_exactly_once(p.dump(), devices)
    p.wait_sinks_caught_up(timeout=30)
    assert_exactly_once(p.disk_entries(), devices)


def test_a_batch_synced_but_not_yet_published_durable_is_kept_by_recovery(pipeline_factory, tmp_path):
    # released and last_durable are out (ingestd may ACK, and refills the
    # ring's freed space) but durable_lsn is not: recovery must keep that
    # synced batch, not cut it and count on the ring, which no longer holds
    # it on a small ring under load
    p = pipeline_factory(shm__ring_bytes="1M", wal__commit_bytes="256K")
    devices = {f"rel-{i}": 20000 for i in range(6)}
    stream_through_fault(p, tmp_path, "flusherd.after_release", 2, devices)
    log = p.log.read_text()
    assert "records were lost" not in log
    rec = [l for l in log.splitlines() if " recovered " in l][1]   # the restart's
    assert " 0 bytes cut from the tail" in rec, rec
    assert_exactly_once(p.dump(), devices)
