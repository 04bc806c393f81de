"""Integration harness: the real binaries under run/supervise, on loopback.

Each test gets its own data directory, instance name (shm region) and port.
Helpers read what a user would read: ingest-stats --json, flusherd --replay
--dump, and the disk sink's files (format in sinkd/sink_disk.c).
"""
import json
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BUILD = Path(os.environ.get("MI_BUILD", ROOT / "build"))
BIN = BUILD / "bin"
sys.path.insert(0, str(ROOT / "client" / "python"))

import mi_client  # noqa: E402

_seq = 0


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_for(cond, timeout=10.0, what="condition", interval=0.02):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def wait_gone(pids, timeout=10, what="the processes to exit"):
    """Waits until none of pids is a process any more."""
    def gone():
        for pid in pids:
            try:
                os.kill(pid, 0)
                return False
            except ProcessLookupError:
                pass
        return True
    wait_for(gone, timeout, what)


class ServerProcess:
    """A test's server (nats-server, s3rver): started in its own session
    with its output in `log`, up once `ready` appears there anew, killed
    with SIGKILL (as a crash ends it), also when it never came up."""

    def __init__(self, log: Path, what: str):
        self.log, self.what, self.proc = log, what, None

    def spawn(self, args, ready, env=None):
        before = self.log.read_text(errors="replace").count(ready) if self.log.exists() else 0
        with open(self.log, "ab") as logf:
            self.proc = subprocess.Popen([str(a) for a in args], stdout=logf, stderr=subprocess.STDOUT,
                                         start_new_session=True, env=env)
        try:
            wait_for(lambda: self.log.read_text(errors="replace").count(ready) > before
                     or self.proc.poll() is not None, 30, f"{self.what} to come up")
        except AssertionError:
            self.kill()
            raise
        assert self.proc.poll() is None, f"{self.what} exited:\n{self.log.read_text(errors='replace')}"

    def kill(self):
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.proc = None


def assert_connect_dropped(port, host="127.0.0.1"):
    """A banned source: the listener filter drops the SYN, so the connect
    does not complete."""
    c = socket.socket()
    c.settimeout(0.5)
    with pytest.raises(OSError):
        c.connect((host, port))
    c.close()


def _default_signals():
    """A run under nohup, or started as a background job, ignores SIGHUP or
    SIGINT, and a shell cannot trap a signal ignored when it started: the
    supervisor would never pass SIGHUP on to ingestd."""
    for sig in (signal.SIGHUP, signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_DFL)


class Pipeline:
    def __init__(self, tmp: Path, **overrides):
        global _seq
        _seq += 1
        self.tmp = tmp
        self.data = Path(overrides.pop("data_dir", tmp / "data"))
        self.port = free_port()
        self.instance = f"t{os.getpid()}x{_seq}"
        self.ini = tmp / "test.ini"
        self.log = tmp / "pipeline.log"
        settings = {
            ("instance", "name"): self.instance,
            ("data", "dir"): str(self.data),
            ("server", "listen"): f"127.0.0.1:{self.port}",
            ("auth", "ndjson"): "true",
            ("shm", "ring_bytes"): "16M",
            ("shm", "devices"): "4096",
            ("wal", "segment_bytes"): "8M",
            ("wal", "commit_bytes"): "1M",
            ("log", "level"): "debug",
            # tests that want bans say so; the rest must not trip one
            ("filter", "ban_after"): "100000",
        }
        self.settings = settings
        self.set(**overrides)
        self.proc = None
        self.streams = []

    def set(self, **overrides):
        """Config keys (section__key = value), written to the ini at once."""
        for k, v in overrides.items():
            sec, key = k.split("__", 1)
            self.settings[(sec, key)] = str(v)
        secs = {}
        for (sec, key), v in self.settings.items():
            secs.setdefault(sec, []).append(f"{key} = {v}")
        self.ini.write_text("".join(f"[{s}]\n" + "\n".join(kv) + "\n\n" for s, kv in secs.items()))

    # -- lifecycle --
    def recoveries(self):
        return self.log.read_text(errors="replace").count("] info: recovered ") if self.log.exists() else 0

    def start(self, wrap=(), **env):
        # the shm region (and its ready flag) may survive from a previous
        # start: wait for this start's own recovery
        before = self.recoveries()
        self.logf = open(self.log, "ab")
        self.proc = subprocess.Popen([*wrap, str(ROOT / "run" / "supervise"), "-c", str(self.ini), "-b", str(BIN)],
                                     stdout=self.logf, stderr=subprocess.STDOUT, start_new_session=True,
                                     env={**os.environ, **env}, preexec_fn=_default_signals)
        wait_for(lambda: self.recoveries() > before, 20, "flusherd's recovery")
        self.wait_listening()
        wait_for(lambda: all(self.pid(s, check=False) for s in ("ingestd", "flusherd", "sinkd")), 10,
                 "every stage to be up")
        return self

    def wait_listening(self, timeout=10):
        def up():
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return True
            except OSError:
                return False
        wait_for(up, timeout, f"ingestd on port {self.port}")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.proc = None
        # a stage stopped with SIGSTOP would outlive its supervisor
        for st in ("ingestd", "flusherd", "sinkd"):
            pid = self.pid(st, check=False)
            if pid:
                try:
                    os.kill(pid, signal.SIGCONT)
                except OSError:
                    pass

    def close(self):
        # a test that failed mid-stream leaves its senders running
        for s in self.streams:
            s.kill()
        self.stop()
        self.check_sanitizers()
        subprocess.run(["rm", "-rf", f"/sys/fs/bpf/module-ingest/{self.instance}"], check=False)
        try:
            os.unlink(f"/dev/shm/module-ingest.{self.instance}")
        except FileNotFoundError:
            pass

    def check_sanitizers(self):
        """A sanitizer report from any stage fails the test, even when the
        supervisor restarted the stage and the test itself passed."""
        if not self.log.exists():
            return
        text = self.log.read_text(errors="replace")
        for mark in ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:"):
            i = text.find(mark)
            if i >= 0:
                raise AssertionError(f"sanitizer report in {self.log}:\n{text[max(0, i - 200):i + 3000]}")

    # -- what a user reads --
    def run(self, *args, check=False, timeout=60, **kw):
        return subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=timeout,
                              check=check, **kw)

    def stats(self):
        r = self.run(BIN / "ingest-stats", "-c", self.ini, "--json", "--devices")
        assert r.returncode == 0, r.stderr
        return json.loads(r.stdout)

    def counter(self, stage, name):
        return self.stats()["stages"][stage]["counters"][name]

    def drops(self):
        """The drop table by reason name (kernel + user space), or None."""
        d = self.stats()["drops"]
        return None if d is None else {k: v["packets"] for k, v in d.items()}

    def pid(self, stage, check=True):
        try:
            s = self.stats()["stages"][stage]
        except AssertionError:
            if check:
                raise
            return 0
        return s["pid"] if s["up"] else 0

    def kill(self, stage, sig=signal.SIGKILL):
        pid = self.pid(stage)
        assert pid, f"{stage} is not running"
        os.kill(pid, sig)
        return pid

    def wait_restarted(self, stage, old_pid, timeout=10):
        return wait_for(lambda: self.pid(stage, check=False) not in (0, old_pid), timeout,
                        f"{stage} restarted")

    def replay(self, *flags):
        return self.run(BIN / "flusherd", "-c", self.ini, "--replay", *flags)

    def dump(self):
        r = self.replay("--dump")
        assert r.returncode == 0, f"--replay found damage:\n{r.stderr}"
        return [json.loads(l) for l in r.stdout.splitlines() if l.strip()]

    def wait_sinks_caught_up(self, timeout=20, names=None):
        """Until every sink instance (or those named) committed the whole log."""
        def done():
            st = self.stats()
            return st["sinks"] and all(s["committed_lsn"] >= st["durable_lsn"] for s in st["sinks"]
                                       if names is None or s["name"] in names)
        wait_for(done, timeout, "sinks to catch up")

    def disk_entries(self, d=None):
        """Every entry of a disk sink instance's directory (default: that of
        the instance 'disk'), checked: list of dicts."""
        out = []
        d = Path(d) if d else self.data / "sinks" / "disk"
        for f in sorted(d.glob("topic-*.log")):
            b = f.read_bytes()
            off = 0
            while off < len(b):
                assert b[off:off + 4] == b"MIDR", f"{f}: bad magic at {off}"
                ln, lsn, seq, ts, srv, topic, idl = struct.unpack_from("<IQQQQHB", b, off + 4)
                body = b[off:off + ln - 4]
                (crc,) = struct.unpack_from("<I", b, off + ln - 4)
                assert zlib.crc32(body) == crc, f"{f}: bad crc at {off}"
                dev = b[off + 44:off + 44 + idl].decode()
                out.append({"device": dev, "seq": seq, "topic": topic, "lsn": lsn,
                            "payload": b[off + 44 + idl:off + ln - 4]})
                off += ln
        return out

    def client(self, device, **kw):
        return mi_client.Client("127.0.0.1", self.port, device, **kw)

    def send(self, device, count, size=100, timeout=60, extra=()):
        """mi-send --count: returns the CompletedProcess."""
        return self.run(BIN / "mi-send", "-p", self.port, "-d", device, "--count", count, "--size", size,
                        "--timeout", timeout, *extra, timeout=timeout + 30)

    def send_async(self, device, count, size=100, timeout=60, extra=()):
        return subprocess.Popen([str(BIN / "mi-send"), "-p", str(self.port), "-d", device, "--count", str(count),
                                 "--size", str(size), "--timeout", str(timeout), *map(str, extra)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def stream(self, device, size=100, rate=None, timeout=60, extra=()):
        """Load that runs until told to stop (mi-send --until-stopped)."""
        s = Stream(self, device, size=size, rate=rate, timeout=timeout, extra=extra)
        self.streams.append(s)
        return s

    def durable_seq(self, device, stats=None):
        """The device's last durable seq in the server's device table (0: none yet)."""
        for d in (stats or self.stats())["devices"]:
            if d["id"] == device:
                return d["last_durable"]
        return 0


class Stream:
    """One device sending generated frames (payloads as --count makes them)
    until stop().  A test acts while it runs and waits on what the server
    reports (the device's durable seq), never on how long a fixed count of
    frames might last on this machine."""

    def __init__(self, pipeline, device, size=100, rate=None, timeout=60, extra=()):
        self.p, self.device = pipeline, device
        self.first = self.last = None
        args = [BIN / "mi-send", "-p", pipeline.port, "-d", device, "--until-stopped", "--size", size,
                "--timeout", timeout, *(("--rate", rate) if rate else ()), *extra]
        # stderr to a file, not a pipe nobody reads while it runs: NACK lines
        # of a long run must not fill the pipe and block the sender
        self.err_path = pipeline.tmp / f"stream-{device}-{len(pipeline.streams)}.err"
        with open(self.err_path, "w") as err:
            self.proc = subprocess.Popen([str(a) for a in args], stdin=subprocess.DEVNULL,
                                         stdout=subprocess.DEVNULL, stderr=err)

    def stderr(self):
        return self.err_path.read_text(errors="replace")

    def running(self):
        return self.proc.poll() is None

    def assert_running(self):
        rc = self.proc.poll()
        assert rc is None, f"{self.device}: mi-send exited {rc} before it was stopped:\n{self.stderr()}"

    def durable(self, stats=None):
        return self.p.durable_seq(self.device, stats)

    def wait_durable(self, seq, timeout=60):
        """Until the server reports seq (and so every seq before it) of this
        stream durable; fails at once if the sender gave up."""
        def reached():
            self.assert_running()
            return self.durable() >= seq
        wait_for(reached, timeout, f"{self.device}: seq {seq} durable")
        return self.durable()

    def wait_progress(self, frames=1, timeout=60):
        """Until `frames` more of this stream's frames are durable than now."""
        return self.wait_durable(self.durable() + frames, timeout)

    def _catches_sigterm(self):
        # mi-send installs its handler before it connects; a SIGTERM sent
        # before that (right after the exec) would kill it instead.  One
        # that exited is done waiting (stop() then says how it ended).
        if self.proc.poll() is not None:
            return True
        try:
            with open(f"/proc/{self.proc.pid}/status") as f:
                cgt = [l for l in f if l.startswith("SigCgt:")][0].split()[1]
        except (OSError, IndexError):
            return self.proc.poll() is not None
        return int(cgt, 16) >> (signal.SIGTERM - 1) & 1

    def stop(self, timeout=120):
        """SIGTERM, then mi-send waits for every ACK: returns the last seq it
        sent (every seq of first..last must then be stored once)."""
        wait_for(self._catches_sigterm, 10, f"{self.device}: mi-send to catch SIGTERM")
        self.assert_running()
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"{self.device}: mi-send did not exit {timeout}s after SIGTERM:\n{self.stderr()}")
        err = self.stderr()
        assert rc == 0, f"{self.device}: mi-send exited {rc}:\n{err}"
        m = re.search(r" seq (\d+)\.\.(\d+) elapsed ", err)
        assert m, err
        self.first, self.last = int(m[1]), int(m[2])
        return self.last

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture(scope="session")
def count_so(tmp_path_factory):
    """The out-of-tree example sink, built as a user would: its own Makefile,
    against sinkd/sink.h alone."""
    out = tmp_path_factory.mktemp("count")
    r = subprocess.run(["make", "-s", "-C", str(ROOT / "examples" / "sinks" / "count"), f"OUT={out}"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return out / "count.so"


@pytest.fixture
def pipeline_factory(tmp_path):
    made = []

    def make(**overrides):
        p = Pipeline(tmp_path, **overrides)
        made.append(p)
        return p
    yield make
    for p in made:
        p.close()


@pytest.fixture
def pipeline(pipeline_factory):
    return pipeline_factory().start()


def assert_exactly_once(records, expect):
    """records: dicts with device and seq; expect: {device: max_seq}, seqs 1..max each once."""
    seen = {}
    for r in records:
        key = (r["device"], r["seq"])
        assert key not in seen, f"{key} stored twice"
        seen[key] = r
    for dev, n in expect.items():
        missing = [s for s in range(1, n + 1) if (dev, s) not in seen]
        assert not missing, f"{dev}: {len(missing)} seqs missing, first {missing[:5]}"
    extra = [k for k in seen if k[0] not in expect or k[1] > expect[k[0]]]
    assert not extra, f"unexpected records {extra[:5]}"
