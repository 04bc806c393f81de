"""mi-keys: the device registry tool, run as an operator would (no pipeline)."""
import base64
import os
import re
import stat
import subprocess

from conftest import BIN

FPR = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"


def keys(tmp_path, *args, umask=None):
    def pre():
        if umask is not None:
            os.umask(umask)
    return subprocess.run([str(BIN / "mi-keys"), "-f", str(tmp_path / "keys"), *args],
                          capture_output=True, text=True, timeout=30, preexec_fn=pre)


def added_key(r):
    assert r.returncode == 0, r.stderr
    out = r.stdout.strip()
    assert re.fullmatch(r"[A-Za-z0-9+/]{43}=", out), out
    assert len(base64.b64decode(out)) == 32
    return out


def test_lifecycle(tmp_path):
    f = tmp_path / "keys"
    k1 = added_key(keys(tmp_path, "add", "sensor-1", umask=0))
    assert stat.S_IMODE(f.stat().st_mode) == 0o600
    k2 = added_key(keys(tmp_path, "add", "gw.lab:7", "--topics", "telemetry,logs", "--fingerprint", FPR))
    assert k1 != k2
    assert k1 in f.read_text() and k2 in f.read_text()

    r = keys(tmp_path, "list")
    assert r.returncode == 0, r.stderr
    assert "sensor-1" in r.stdout and "gw.lab:7" in r.stdout and "telemetry,logs" in r.stdout
    assert k1 not in r.stdout + r.stderr and k2 not in r.stdout + r.stderr
    assert "key=" not in r.stdout

    r = keys(tmp_path, "show", "gw.lab:7")
    assert r.returncode == 0, r.stderr
    assert "telemetry,logs" in r.stdout and FPR in r.stdout and "enabled" in r.stdout
    assert k2 not in r.stdout + r.stderr

    k3 = added_key(keys(tmp_path, "rotate", "gw.lab:7"))
    assert k3 != k2
    text = f.read_text()
    assert k3 in text and k2 not in text and k1 in text
    assert stat.S_IMODE(f.stat().st_mode) == 0o600

    r = keys(tmp_path, "disable", "sensor-1")
    assert r.returncode == 0, r.stderr
    assert r.stdout == ""
    assert "disabled" in keys(tmp_path, "show", "sensor-1").stdout
    assert re.search(r"sensor-1 +disabled", keys(tmp_path, "list").stdout)
    assert keys(tmp_path, "enable", "sensor-1").returncode == 0
    assert re.search(r"state: +enabled", keys(tmp_path, "show", "sensor-1").stdout)
    assert k1 in f.read_text()                     # disable/enable keep the key

    r = keys(tmp_path, "remove", "sensor-1")
    assert r.returncode == 0, r.stderr
    assert "sensor-1" not in f.read_text() and k1 not in f.read_text()
    assert "sensor-1" not in keys(tmp_path, "list").stdout
    assert stat.S_IMODE(f.stat().st_mode) == 0o600
    # no temp files left behind
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keys"]


def test_exit_codes(tmp_path):
    added_key(keys(tmp_path, "add", "dev1"))
    before = (tmp_path / "keys").read_text()
    r = keys(tmp_path, "add", "dev1")
    assert r.returncode == 1 and r.stdout == ""
    assert "dev1" in r.stderr and "already exists" in r.stderr
    assert (tmp_path / "keys").read_text() == before
    for cmd in ("show", "disable", "enable", "rotate", "remove"):
        r = keys(tmp_path, cmd, "nope")
        assert r.returncode == 1, (cmd, r.stderr)
        assert "nope" in r.stderr and r.stdout == ""
    assert keys(tmp_path).returncode == 2
    assert keys(tmp_path, "frobnicate").returncode == 2
    assert keys(tmp_path, "add", "bad id").returncode == 2
    assert keys(tmp_path, "add", "dev2", "--topics", "a,,b").returncode == 2
    assert keys(tmp_path, "add", "dev2", "--fingerprint", "abc").returncode == 2
    assert keys(tmp_path, "show", "dev1", "--topics", "a").returncode == 2
    r = subprocess.run([str(BIN / "mi-keys"), "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "Exit status" in r.stdout
    r = subprocess.run([str(BIN / "mi-keys"), "-f", str(tmp_path / "missing"), "list"],
                       capture_output=True, text=True)
    assert r.returncode == 3 and "missing" in r.stderr
    assert (tmp_path / "keys").read_text() == before


def test_open_mode_refused(tmp_path):
    f = tmp_path / "keys"
    added_key(keys(tmp_path, "add", "dev1"))
    f.chmod(0o644)
    for args in (("list",), ("add", "dev2"), ("rotate", "dev1")):
        r = keys(tmp_path, *args)
        assert r.returncode == 3, r.stderr
        assert "chmod 600" in r.stderr and "0644" in r.stderr
        assert r.stdout == ""
    f.chmod(0o600)
    assert keys(tmp_path, "list").returncode == 0


def test_malformed_file_names_line(tmp_path):
    f = tmp_path / "keys"
    added_key(keys(tmp_path, "add", "dev1"))
    with f.open("a") as fh:
        fh.write("dev2 key=notbase64! topics=*\n")
    r = keys(tmp_path, "list")
    assert r.returncode == 3
    assert f"{f}:4:" in r.stderr and "dev2" in r.stderr and "base64" in r.stderr
