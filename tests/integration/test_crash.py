"""SIGKILL of every stage, more than once, while devices stream."""
import signal
import time

from conftest import assert_exactly_once, wait_for


def test_sigkill_each_stage_repeatedly_loses_nothing_and_repeats_nothing(pipeline):
    devices = {f"crash-{i}": 400000 for i in range(4)}
    procs = {d: pipeline.send_async(d, n, size=64, timeout=60) for d, n in devices.items()}
    kills = 0
    for round_ in range(2):
        for stage in ("flusherd", "ingestd", "sinkd"):
            time.sleep(0.3)
            if all(p.poll() is not None for p in procs.values()):
                break
            old = pipeline.kill(stage, signal.SIGKILL)
            kills += 1
            pipeline.wait_restarted(stage, old)
    for d, p in procs.items():
        out, err = p.communicate(timeout=180)
        assert p.returncode == 0, f"{d}: {err}"
    assert kills >= 3, "the streams ended before the stages could be killed"
    assert_exactly_once(pipeline.dump(), devices)
    pipeline.wait_sinks_caught_up(timeout=60)
    assert_exactly_once(pipeline.disk_entries(), devices)
    st = pipeline.stats()["stages"]
    assert st["flusherd"]["restarts"] >= 1 and st["ingestd"]["restarts"] >= 1


def test_restarted_ingestd_acks_again_within_a_second(pipeline):
    assert pipeline.send("fast-0", 10).returncode == 0
    old = pipeline.kill("ingestd")
    t0 = time.monotonic()
    wait_for(lambda: pipeline.send("fast-0", 1, timeout=5).returncode == 0, 10, "an ACK after the restart",
             interval=0.01)
    assert time.monotonic() - t0 < 1.0
    assert pipeline.pid("ingestd") != old


def test_restarted_flusherd_acks_again_within_a_second(pipeline):
    assert pipeline.send("fast-1", 10).returncode == 0
    pipeline.kill("flusherd")
    t0 = time.monotonic()
    assert pipeline.send("fast-1", 1, timeout=5).returncode == 0
    assert time.monotonic() - t0 < 1.0


def test_killing_the_supervisor_takes_the_stages_down(pipeline):
    pids = [pipeline.pid(s) for s in ("ingestd", "flusherd", "sinkd")]
    pipeline.proc.send_signal(signal.SIGKILL)
    pipeline.proc.wait()

    def gone():
        import os
        for p in pids:
            try:
                os.kill(p, 0)
                return False
            except ProcessLookupError:
                pass
        return True
    wait_for(gone, 10, "stages to exit after the supervisor died")
