"""The disk fills: flusherd stalls (no crash, no ACK), space comes back, all arrives."""
import os
import subprocess
import time

import pytest

from conftest import assert_exactly_once, wait_for

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")


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
    n = 60000
    sender = p.send_async("full-dev", n, size=100, timeout=120)
    wait_for(lambda: p.counter("flusherd", "stalled") >= 1, 30, "flusherd to stall on ENOSPC")
    flusher = p.pid("flusherd")
    # a spare segment being made when the disk filled is given up, and the
    # log may use that space before it stalls for good
    time.sleep(0.5)
    acked = p.counter("ingestd", "acks_sent")
    time.sleep(1.0)
    assert p.counter("ingestd", "acks_sent") == acked, "ACKs went out while the WAL could not be written"
    assert sender.poll() is None
    assert p.counter("flusherd", "write_errors") >= 1
    filler.unlink()
    out, err = sender.communicate(timeout=180)
    assert sender.returncode == 0, err
    assert p.pid("flusherd") == flusher, "flusherd crashed on ENOSPC"
    assert "writing again" in p.log.read_text()
    assert_exactly_once(p.dump(), {"full-dev": n})
    p.wait_sinks_caught_up(timeout=30)
    assert_exactly_once(p.disk_entries(), {"full-dev": n})
