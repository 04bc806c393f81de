"""The disk fills: flusherd stalls (no crash, no ACK), space comes back, all arrives."""
import os
import re
import subprocess
import time

import pytest

from conftest import assert_exactly_once, wait_for

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")


def stall_lines(p):
    """(stalls logged, recoveries logged) by flusherd: stalled now when the first is higher."""
    log = p.log.read_text(errors="replace")
    return log.count("acks stop until it succeeds"), log.count("writing again after")


def assert_no_acks_while_stalled(p, sender):
    """Once flusherd stalls, no ACK goes out while it stays stalled.

    The stall may not be final at once: a spare segment being made when the
    disk filled is given up, and the disk sink cuts its files back, so the
    log can go on for a while on the space they free (and ACK what it
    syncs).  So the test waits for a stall, then for 1 s in which ingestd
    sends the ACKs of what was synced before it, then watches 1 s more: if
    flusherd stayed stalled and published nothing over both, no ACK may
    have gone out in the second.  A stall that did not hold is watched
    again, until a deadline."""
    deadline = time.monotonic() + 60
    while True:
        wait_for(lambda: stall_lines(p)[0] > stall_lines(p)[1], 30, "flusherd to stall on ENOSPC")
        lines, lsn = stall_lines(p), p.stats()["durable_lsn"]
        time.sleep(1.0)
        acked = p.counter("ingestd", "acks_sent")
        time.sleep(1.0)                     # the assertion: stalled, so no ACK for 1 s
        st = p.stats()
        if stall_lines(p) == lines and st["durable_lsn"] == lsn:
            break
        assert time.monotonic() < deadline, "flusherd never stayed stalled for 2 s"
    assert st["stages"]["ingestd"]["counters"]["acks_sent"] == acked, \
        "ACKs went out while the WAL could not be written"
    assert sender.poll() is None


@pytest.fixture
def small_fs(tmp_path):
    mnt = tmp_path / "small"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m,mode=0700", "tmpfs", str(mnt)], check=True)
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_enospc_stalls_acks_and_resumes_when_space_is_freed(pipeline_factory, small_fs):
    p = pipeline_factory(data_dir=small_fs / "data", wal__segment_bytes="1M", shm__ring_bytes="8M",
                         wal__commit_bytes="256K", sinkd__commit_ms=50).start()
    # leave ~3 MB free, then send ~10 MB of records
    filler = small_fs / "filler"
    with open(filler, "wb") as f:
        f.write(b"\0" * (21 << 20))
    # the space, not the machine's speed, stops this count: ~9 MB of
    # records (and as much in the disk sink) cannot fit in ~3 MB
    n = 60000
    sender = p.send_async("full-dev", n, size=100, timeout=120)
    flusher = p.pid("flusherd")
    assert_no_acks_while_stalled(p, sender)
    assert p.counter("flusherd", "stalled") >= 1
    # the first thing to meet the full disk may be a write (write_errors
    # counts it) or the creation of the next segment: either is a stall
    # named in the log
    assert re.search(r"flusherd\[\d+\] error: (write|create segment) .*: No space left on device; acks stop "
                     r"until it succeeds", p.log.read_text()), "the stall was not named"
    filler.unlink()
    out, err = sender.communicate(timeout=180)
    assert sender.returncode == 0, err
    assert p.pid("flusherd") == flusher, "flusherd crashed on ENOSPC"
    assert "writing again" in p.log.read_text()
    assert_exactly_once(p.dump(), {"full-dev": n})
    p.wait_sinks_caught_up(timeout=30)
    assert_exactly_once(p.disk_entries(), {"full-dev": n})


def test_sigterm_stops_a_stalled_flusherd_and_the_stall_names_its_file(pipeline_factory, small_fs):
    p = pipeline_factory(data_dir=small_fs / "data", wal__segment_bytes="1M", shm__ring_bytes="8M",
                         wal__commit_bytes="256K").start()
    filler = small_fs / "filler"
    with open(filler, "wb") as f:
        f.write(b"\0" * (21 << 20))
    sender = p.send_async("stuck-dev", 60000, size=100, timeout=120)
    assert_no_acks_while_stalled(p, sender)
    log = p.log.read_text()
    stall = [l for l in log.splitlines() if "acks stop until it succeeds" in l]
    assert stall, log[-2000:]
    # the operation and the file it failed on: a write or sync of the
    # current segment, or the creation of the next one
    assert "No space left on device" in stall[0] and str(small_fs / "data" / "wal") in stall[0], stall[0]
    assert any(op in stall[0] for op in ("write ", "fdatasync ", "create segment ")), stall[0]
    flusher = p.pid("flusherd")
    t0 = time.monotonic()
    p.stop()
    took = time.monotonic() - t0
    sender.kill()
    sender.wait()
    log = p.log.read_text()
    assert f"flusherd (pid {flusher}) did not stop" not in log, "SIGTERM left a stalled flusherd running"
    assert "stopping while stalled" in log
    assert took < 14, f"shutdown took {took:.1f} s"
    # whatever was acked before the stall is there once, after a restart
    filler.unlink()
    p.start()
    acked = [r for r in p.dump() if r["device"] == "stuck-dev"]
    assert sorted(r["seq"] for r in acked) == list(range(1, len(acked) + 1))
