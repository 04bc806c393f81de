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


def proc_state(pid):
    return open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0]


def test_sigstop_flusherd_stalls_clients_bounds_memory_and_sigcont_delivers(pipeline_factory):
    p = pipeline_factory(shm__ring_bytes="4M", wal__commit_bytes="1M").start()
    devices = ("bp-0", "bp-1")
    for d in devices:                       # acks flow for both devices first
        assert p.send(d, 1000).returncode == 0
    flusher = p.pid("flusherd")
    p.kill("flusherd", signal.SIGSTOP)
    try:
        wait_for(lambda: proc_state(flusher) == "T", 10, "flusherd to stop")
        # nothing in flight: ingestd is not waiting for ring space now, so the
        # next stall is the one the streams cause by filling the ring
        stalls = p.counter("ingestd", "ring_full_stalls")
        # windows far larger than the ring, so the ring (not the clients)
        # fills: ~27 MB in flight against 4 MiB
        streams = [p.stream(d, size=100, extra=("--window", 100000)) for d in devices]

        def stalled():
            for s in streams:
                s.assert_running()
            return p.counter("ingestd", "ring_full_stalls") > stalls
        wait_for(stalled, 60, "ingestd to stall on the full ring")
        st = p.stats()
        stored = st["stages"]["ingestd"]["counters"]["frames_stored"]
        acks = st["stages"]["ingestd"]["counters"]["acks_sent"]
        durable = {d: p.durable_seq(d, st) for d in devices}
        time.sleep(1.0)                     # the assertion: a full ring takes nothing for 1 s
        st = p.stats()
        ic = st["stages"]["ingestd"]["counters"]
        assert ic["frames_stored"] == stored, "ingestd kept storing into a full ring"
        ring = st["rings"][0]
        assert ring["head"] - ring["released"] > 3 * ring["cap"] // 4, "the ring should be (nearly) full"
        # senders must still wait for acks: none went out, nothing more is durable
        assert ic["acks_sent"] == acks and {d: p.durable_seq(d, st) for d in devices} == durable
        for s in streams:
            s.assert_running()
        assert rss_anon_kib(p.pid("ingestd")) < 64 * 1024
        # waiting for ring space must not spin
        ing = p.pid("ingestd")
        cpu0 = cpu_seconds(ing)
        time.sleep(1.0)
        assert cpu_seconds(ing) - cpu0 < 0.2, "ingestd burns CPU while the ring is full"
        # one stall episode: only flusherd's next publication ends it
        assert p.counter("ingestd", "ring_full_stalls") == stalls + 1
    finally:
        p.kill("flusherd", signal.SIGCONT)
    for s in streams:
        s.wait_durable(durable[s.device] + 1)
    last = {s.device: s.stop() for s in streams}
    assert all(s.first == 1001 for s in streams)
    assert p.pid("flusherd") == flusher
    assert_exactly_once(p.dump(), last)
