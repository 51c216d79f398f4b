"""tests/console.py runs `omnitok` in a child of a fork server (tests/_zygote.py) instead of a
fresh interpreter: the same command line through both gives the same exit code, stdout bytes and
stderr text; a killed child reports its signal, a timeout leaves no process, and the zygote ends
with the test process that started it."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import orjson
import pytest

from tests import _zygote, console
from tests.console import OMNITOK, _Zygote, exec_omnitok, omnitok

ROOT = Path(__file__).resolve().parent.parent

PAIRS = b'{"original":"the cat sat on the mat","compressed":"a dog"}\n'
BIG = b'{"text":"the quick brown fox jumps over the lazy dog"}\n' * 60_000  # ~3 MB

CASES = {
    "count-stdin": (["count", "-m", "gpt-4o", "-"], b"hello world\n"),
    "count-file": (["count", "-m", "gpt-4o", "{tmp}/a.txt"], b""),
    "count-jsonl": (["count", "-m", "gpt-4o", "--format", "jsonl", "-"], b'{"text":"hi"}\n{"text":"there"}\n'),
    "count-big-stdin": (["count", "-m", "gpt-4o", "--summary", "-"], BIG),
    "count-bad-record": (["count", "-m", "gpt-4o", "--format", "jsonl", "-"], b'{"text":"hi"}\n{"text":\n'),
    "count-missing-file": (["count", "-m", "gpt-4o", "{tmp}/nope.txt"], b""),
    "count-output-file": (["count", "-m", "gpt-4o", "-o", "out.jsonl", "--format", "jsonl", "-"], b'{"text":"a b"}\n'),
    "encode": (["encode", "-m", "gpt-4o", "hello world"], b""),
    "decode": (["decode", "-m", "gpt-4o", "24912", "2375"], b""),
    "validate-gate": (["validate", "{tmp}/pairs.jsonl", "--metrics", "rouge-l", "--min-rouge-l", "0.9"], b""),
    "usage-error": (["count", "--no-such-option"], b""),
    "help": (["--help"], b""),
    "version": (["--version"], b""),
}


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    """An OMNITOK_HOME (set for every case) with o200k's ranks cached."""
    path = tmp_path_factory.mktemp("home")
    env = {**os.environ, "OMNITOK_HOME": str(path)}
    assert exec_omnitok("count", "-m", "gpt-4o", "--text", "x", stdin=b"", env=env).code == 0
    return path


@pytest.mark.parametrize("name", CASES)
def test_zygote_matches_a_fresh_process(name, tmp_path, home):
    args, stdin = CASES[name]
    (tmp_path / "a.txt").write_text("hello there, general kenobi\n")
    (tmp_path / "pairs.jsonl").write_bytes(PAIRS)
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    env = {**os.environ, "OMNITOK_HOME": str(home), "COLUMNS": "100"}
    runs = []
    for way in ("zygote", "exec"):
        cwd = tmp_path / way
        cwd.mkdir()
        if way == "zygote":
            before = _Zygote.runs
            run = omnitok(*args, stdin=stdin, env=env, cwd=cwd)
            assert _Zygote.runs == before + 1  # not a fall-back exec
        else:
            run = exec_omnitok(*args, stdin=stdin, env=env, cwd=cwd)
        written = {p.name: p.read_bytes() for p in cwd.iterdir()}
        runs.append((run.code, run.out, run.err.replace(str(cwd), "CWD"), written))
    assert runs[0] == runs[1]


PROBE = """
import json, os, signal, sys
def stream(s):
    raw = getattr(s.buffer, "raw", s.buffer)
    return [type(s).__name__, type(s.buffer).__name__, raw.name, s.encoding, s.errors, s.line_buffering,
            s.write_through, s.mode, s.newlines, s is getattr(sys, "__" + raw.name[1:-1] + "__")]
x: int = 1
state = {
    "stdio": [stream(s) for s in (sys.stdin, sys.stdout, sys.stderr)], "argv": sys.argv, "path0": sys.path[0],
    "executable": sys.executable, "signals": {str(s): repr(signal.getsignal(s)) for s in signal.valid_signals()
    if s not in (signal.SIGKILL, signal.SIGSTOP)}, "mask": sorted(signal.pthread_sigmask(signal.SIG_BLOCK, [])),
    "fds": sorted(os.listdir("/proc/self/fd")), "cwd": os.getcwd(), "umask": os.umask(0),
    "main": sorted((k, repr(v) if k != "__loader__" else type(v).__name__) for k, v in vars(sys.modules["__main__"]).items()
                   if k.startswith("__") and k != "__builtins__"),
    "env": os.environ.get("PROBE"), "annotations": repr(__annotations__),  # no __future__ of the zygote's
    "limits": __import__("resource").getrlimit(__import__("resource").RLIMIT_NOFILE),
}
json.dump(state, sys.stdout)
print("to stderr", file=sys.stderr)
raise RuntimeError("boom")
"""


def test_the_child_is_what_a_fresh_interpreter_is(tmp_path, monkeypatch):
    """A script's view of itself (stdio objects, signals, argv, sys.path[0], fds, __main__, cwd,
    umask, environment) and its traceback: the same forked from a zygote as exec'd."""
    script = tmp_path / "probe"
    script.write_text(Path(OMNITOK).read_text().splitlines()[0] + "\n" + PROBE)
    script.chmod(0o755)
    monkeypatch.setattr(console, "OMNITOK", str(script))
    monkeypatch.setattr(_Zygote, "_current", None)
    env = {**os.environ, "PROBE": "yes"}
    try:
        forked = omnitok("a", "--b", stdin=b"x", env=env, cwd=tmp_path)
        assert _Zygote._current is not None and _Zygote.runs >= 1
    finally:
        if _Zygote._current is not None:
            _Zygote._current.close()
    fresh = exec_omnitok("a", "--b", stdin=b"x", env=env, cwd=tmp_path)
    assert (forked.code, orjson.loads(forked.out), forked.err) == (fresh.code, orjson.loads(fresh.out), fresh.err)
    assert fresh.err.endswith("RuntimeError: boom\n") and fresh.code == 1


def _children(pid: int) -> list[int]:
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return [int(p) for p in f.read().split()]


def test_a_child_killed_by_a_signal_reports_it():
    zygote = _Zygote.get()
    assert zygote is not None
    killed = []

    def kill_first_child():
        deadline = time.monotonic() + 10
        while not killed and time.monotonic() < deadline:
            for child in _children(zygote.pid):
                os.kill(child, 9)
                killed.append(child)
            time.sleep(0.001)

    killer = threading.Thread(target=kill_first_child)
    killer.start()
    run = omnitok("count", "-m", "gpt-4o", "--summary", "-", stdin=BIG * 3)
    killer.join()
    assert killed and run.code == -9


def test_a_timeout_raises_and_leaves_no_process():
    zygote = _Zygote.get()
    assert zygote is not None
    with pytest.raises(subprocess.TimeoutExpired) as caught:
        omnitok("count", "-m", "gpt-4o", "--summary", "-", stdin=BIG * 3, timeout=0.05)
    assert caught.value.cmd[0] == OMNITOK and caught.value.timeout == 0.05
    assert _children(zygote.pid) == []


def _gone(pid: int) -> bool:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            return True
        if state in ("Z", "X"):  # exited (its new parent reaps it)
            return True
        time.sleep(0.02)
    return False


@pytest.mark.parametrize("end", ["exit", "kill -9"])
def test_the_zygote_ends_with_its_test_process(end):
    code = (
        "from tests.console import omnitok, _Zygote\n"
        "import os, sys\n"
        "assert omnitok('--version').code == 0\n"
        "print(_Zygote._current.pid, flush=True)\n" + ("os.kill(os.getpid(), 9)\n" if end == "kill -9" else "")
    )
    p = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, timeout=60)
    pid = int(p.stdout)
    assert _gone(pid)


def test_a_zygote_that_died_is_replaced():
    zygote = _Zygote.get()
    assert zygote is not None
    zygote.proc.kill()
    zygote.proc.wait()
    before = _Zygote.runs
    assert omnitok("--version").out.startswith(b"omnitok ")
    assert _Zygote.runs == before + 1 and _Zygote._current.pid != zygote.pid


def test_the_zygote_imports_read_no_environment_and_start_no_thread():
    """What the zygote imports once for every child must not have read the environment (a child's
    differs). Excepted: the start-up variables (PYTHON*, LC_*, LANG, TYPER_*), since console.py
    execs a call whose start-up variables differ from the zygote's (zoneinfo reads PYTHONTZPATH,
    sysconfig PYTHONUSERBASE); and, as sysconfig reads them, HOME (its only use there: whether a
    user base exists at all, and `~/.local` always does) and CPython's build variables (_PYTHON_*,
    set only when cross-building CPython)."""
    spy = (
        "import os, re, sys, threading, traceback\n"
        "real = os.environ\n"
        "seen = set()\n"
        "def note(k):\n"
        "    files = {f.filename.rsplit('/', 1)[-1] for f in traceback.extract_stack()}\n"
        "    if not ((k == 'HOME' or k.startswith('_PYTHON_')) and 'sysconfig.py' in files): seen.add(k)\n"
        "class Spy(dict):\n"
        "    def __getitem__(self, k): note(k); return real[k]\n"
        "    def get(self, k, d=None): note(k); return real.get(k, d)\n"
        "    def __contains__(self, k): note(k); return k in real\n"
        "    def __iter__(self): note('*'); return iter(real)\n"
        "os.environ = Spy(real)\n"
        f"for name in {_zygote.PRELOAD!r}: __import__(name)\n"
        "os.environ = real\n"
        f"print(sorted(k for k in seen if not re.fullmatch({console._STARTUP.pattern!r}, k)), threading.active_count())\n"
    )
    p = subprocess.run([sys.executable, "-c", spy], cwd="/", capture_output=True, text=True, timeout=60)
    assert p.stdout.split() == ["[]", "1"], p.stderr
    banned = ("huggingface_hub", "transformers", "torch", "ray", "numpy")
    check = (
        f"import sys\nfor n in {_zygote.PRELOAD!r}: __import__(n)\nprint([m for m in {banned!r} if m in sys.modules])"
    )
    assert subprocess.run([sys.executable, "-c", check], capture_output=True, text=True).stdout.strip() == "[]"


def test_start_up_variables_and_fresh_go_to_a_real_exec(monkeypatch):
    zygote = _Zygote.get()
    assert zygote is not None
    assert not zygote.serves({**os.environ, "PYTHONIOENCODING": "latin-1:zygote"})
    assert not zygote.serves({**os.environ, "LC_ALL": "zygote"})
    assert zygote.serves({**os.environ, "OMNITOK_HOME": "/x"})
    calls = []
    real = console.exec_omnitok
    monkeypatch.setattr(console, "exec_omnitok", lambda *a, **k: calls.append(a) or real(*a, **k))
    assert omnitok("--version").code == 0 and calls == []
    assert omnitok("--version", env={"PYTHONIOENCODING": "utf-8:zygote"}).code == 0
    assert omnitok("--version", fresh=True).code == 0
    assert omnitok("--version", stdin=None).code == 0
    with pytest.raises(FileNotFoundError):
        omnitok("--version", cwd="/no/such/directory")
    monkeypatch.setenv("OMNITOK_TESTS_EXEC", "1")
    assert omnitok("--version").code == 0
    assert len(calls) == 5
