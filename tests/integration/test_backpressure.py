"""flusherd stopped under load: clients stall, ingestd's memory stays bounded."""
import os
import signal
import time

from conftest import assert_exactly_once, wait_for


def cpu_seconds(pid):
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


def rss_anon_kib(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("RssAnon:"):
            return int(line.split()[1])
    raise AssertionError("no RssAnon")


def test_sigstop_flusherd_stalls_clients_bounds_memory_and_sigcont_delivers(pipeline_factory):
    p = pipeline_factory(shm__ring_bytes="4M", wal__commit_bytes="1M").start()
    n = 200000   # ~27 MB of records: several times the ring
    # windows far larger than the ring, so the ring (not the clients) fills
    senders = [p.send_async(f"bp-{i}", n, size=100, timeout=120, extra=("--window", 100000))
               for i in range(2)]
    wait_for(lambda: p.counter("ingestd", "acks_sent") > 0, 20, "first acks")
    flusher = p.pid("flusherd")
    p.kill("flusherd", signal.SIGSTOP)
    try:
        time.sleep(1.0)
        stored = p.counter("ingestd", "frames_stored")
        time.sleep(1.0)
        assert p.counter("ingestd", "frames_stored") == stored, "ingestd kept storing into a full ring"
        ring = p.stats()["rings"][0]
        assert ring["head"] - ring["released"] > 3 * ring["cap"] // 4, "the ring should be (nearly) full"
        assert p.counter("ingestd", "ring_full_stalls") > 0
        assert all(s.poll() is None for s in senders), "senders must still wait for acks"
        assert rss_anon_kib(p.pid("ingestd")) < 64 * 1024
        # waiting for ring space must not spin
        ing = p.pid("ingestd")
        cpu0 = cpu_seconds(ing)
        time.sleep(1.0)
        assert cpu_seconds(ing) - cpu0 < 0.2, "ingestd burns CPU while the ring is full"
        assert p.counter("ingestd", "ring_full_stalls") < 100
    finally:
        p.kill("flusherd", signal.SIGCONT)
    for s in senders:
        out, err = s.communicate(timeout=180)
        assert s.returncode == 0, err
    assert p.pid("flusherd") == flusher
    assert_exactly_once(p.dump(), {"bp-0": n, "bp-1": n})
