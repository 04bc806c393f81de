"""Drop-behind: the log and the disk sink's files are written once and read
once, so what sinkd has consumed and committed leaves the page cache
(sinkd/reader.c, sinkd/sink_disk.c).  Residency is read with fincore
(util-linux), before anything in the test reads the files itself."""
import json
import subprocess

from conftest import wait_for


def resident_pages(path):
    r = subprocess.run(["fincore", "--json", "--bytes", "-o", "PAGES,FILE", str(path)],
                       capture_output=True, text=True, check=True)
    return int(json.loads(r.stdout)["fincore"][0]["pages"])


def test_consumed_segments_and_committed_sink_files_leave_the_page_cache(pipeline_factory):
    p = pipeline_factory(wal__segment_bytes="1M", sinkd__commit_ms="50").start()
    # ~5 MB of log: five 1 MiB segments
    assert p.send("cache", 30000, size=100).returncode == 0
    p.wait_sinks_caught_up()
    segs = sorted((p.data / "wal").glob("*.seg"))
    assert len(segs) >= 5, segs
    # sinkd keeps the segment it reads and the one before mapped; every
    # older one has left the cache (they were all in it: flusherd wrote them)
    old = segs[:-2]
    wait_for(lambda: all(resident_pages(s) == 0 for s in old), 10,
             "consumed segments to leave the page cache")
    # the disk sink's file: committed, so all but the page still appended to
    (topic,) = (p.data / "sinks" / "disk").glob("topic-0-*.log")
    assert topic.stat().st_size > 4 * 1024 * 1024
    wait_for(lambda: resident_pages(topic) <= 1, 10, "the committed sink file to leave the page cache")
    # and nothing was lost by it
    entries = p.disk_entries()
    assert sorted(e["seq"] for e in entries) == list(range(1, 30001))
