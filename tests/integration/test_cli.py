"""Every program answers a bad command line the same way (common/cli.h):
one stderr line naming the option, then the usage on stderr, exit 2, and
nothing on stdout; --help prints the usage on stdout and exits 0.  No
pipeline runs: each program must refuse before it touches anything."""
import subprocess

import pytest

from conftest import BIN, ROOT

# program -> an option that takes an argument (None: it has none)
PROGRAMS = {
    BIN / "ingestd": "-c",
    BIN / "flusherd": "-c",
    BIN / "sinkd": "-c",
    BIN / "ingest-stats": "-i",
    BIN / "mi-send": "-d",
    BIN / "mi-load": "-c",
    BIN / "mi-fsync-probe": None,
    BIN / "mi-udp-flood": "-p",
    BIN / "mi-keys": "-f",
    ROOT / "run" / "supervise": "-c",
    ROOT / "bench" / "run": "-d",
}
IDS = [f"{p.parent.name}/{p.name}" for p in PROGRAMS]


def run(prog, *args):
    return subprocess.run([str(prog), *args], capture_output=True, text=True, timeout=30,
                          stdin=subprocess.DEVNULL)


def assert_refused(r, first_line_has):
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert r.stdout == "", r.stdout
    lines = r.stderr.splitlines()
    assert lines and first_line_has in lines[0], r.stderr
    assert len(lines) > 1, "the usage follows the line that names the option"


@pytest.mark.parametrize("prog", PROGRAMS, ids=IDS)
def test_unknown_option_is_named_then_usage_exit_2(prog):
    r = run(prog, "--bogus")
    assert_refused(r, "'--bogus'")
    assert prog.name in r.stderr.split(":")[0], "the line starts with the program's name"


@pytest.mark.parametrize("prog", PROGRAMS, ids=IDS)
def test_unknown_short_option_too(prog):
    assert_refused(run(prog, "-Z"), "'-Z'")


@pytest.mark.parametrize("prog", [p for p, o in PROGRAMS.items() if o],
                         ids=[i for i, o in zip(IDS, PROGRAMS.values()) if o])
def test_missing_option_argument_is_named(prog):
    opt = PROGRAMS[prog]
    r = run(prog, opt)
    assert_refused(r, f"'{opt}'")
    assert "argument" in r.stderr.splitlines()[0]


@pytest.mark.parametrize("prog", PROGRAMS, ids=IDS)
def test_help_prints_the_usage_on_stdout(prog):
    r = run(prog, "--help")
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""
    assert prog.name in r.stdout.splitlines()[0], r.stdout


def test_daemon_help_lists_the_config_keys_on_stdout():
    """The key tables went to stdout even when the usage went to stderr."""
    r = run(BIN / "sinkd", "--help")
    assert "buffer_bytes" in r.stdout and "[server]" in r.stdout
    r = run(BIN / "sinkd", "--bogus")
    assert "buffer_bytes" in r.stderr and "[server]" in r.stderr
