"""Issue 25, item 3: no orphans. Every process `count --jobs N` forks (the shard workers and the
reference process) dies with its parent, kill -9 included, within 2 s; a killed run's temporary
output (which names its pid) is swept by the next run to that output once that pid is gone, and
only then."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time

import psutil
import pytest

from omnitok.io import output
from tests.console import OMNITOK, omnitok

ROW = b'{"id": 1, "text": "hello world number one two three four five six seven"}\n'
# stdin has no size: it is cut in shards of io.shards.SHARD_MAX, and the workers start once two are read.
STDIN_BYTES = 24_000_000


def _alive(procs: list[psutil.Process]) -> list[psutil.Process]:
    left = []
    for p in procs:
        try:
            if p.status() != psutil.STATUS_ZOMBIE:  # a zombie has ended (its reaper may be slow)
                left.append(p)
        except psutil.NoSuchProcess:
            pass
    return left


def _gone_within(procs: list[psutil.Process], seconds: float) -> list[psutil.Process]:
    deadline = time.monotonic() + seconds
    while (left := _alive(procs)) and time.monotonic() < deadline:
        time.sleep(0.02)
    return left


def _children(parent: psutil.Process, n: int, proc: subprocess.Popen) -> list[psutil.Process]:
    deadline = time.monotonic() + 60
    kids: list[psutil.Process] = []
    while time.monotonic() < deadline and proc.poll() is None:
        kids = parent.children(recursive=True)
        if len(kids) >= n:
            break
        time.sleep(0.02)
    return kids


@pytest.mark.parametrize(
    ("sig", "group"),
    [(signal.SIGKILL, False), (signal.SIGTERM, False), (signal.SIGTERM, True)],
    ids=["SIGKILL", "SIGTERM", "SIGTERM-to-the-group"],  # the group: as systemd and `kill -- -PGID` send it
)
def test_count_jobs_children_die_with_the_parent(tmp_path, sig, group):
    out = tmp_path / "out.jsonl"
    p = subprocess.Popen(
        [OMNITOK, "count", "-m", "gpt-4o", "--jobs", "2", "-o", str(out)],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=group,
    )

    def feed():  # stdin stays open after it: the run cannot end before the kill
        try:
            p.stdin.write(ROW * (STDIN_BYTES // len(ROW)))
            p.stdin.flush()
        except (BrokenPipeError, ValueError):
            pass

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    kids: list[psutil.Process] = []
    try:
        kids = _children(psutil.Process(p.pid), 3, p)
        assert len(kids) >= 3, (p.poll(), p.stderr.read() if p.poll() is not None else "")  # 2 workers, the reference
        os.killpg(p.pid, sig) if group else os.kill(p.pid, sig)
        p.wait(timeout=10)
        left = _gone_within(kids, 2.0)
        assert not left, [(k.pid, k.status()) for k in left]
        tmps = [n for n in os.listdir(tmp_path) if n.endswith(".tmp")]
        if sig == signal.SIGKILL:  # the run's temporary output is left, named by its pid
            assert len(tmps) == 1 and f".out.jsonl.omnitok.{p.pid}." in tmps[0], tmps
        else:  # SIGTERM unwinds as Ctrl-C does: the temporary output removed, one line (no worker's), 143
            assert (p.returncode, p.stderr.read(), tmps) == (143, b"omnitok: terminated\n", [])
    finally:
        for k in _alive(kids):
            k.kill()
        if p.poll() is None:
            p.kill()
        p.wait(timeout=10)
        p.stdin.close()
        p.stderr.close()
        feeder.join(timeout=10)


LIFELINE_SCRIPT = """
import os, threading, time
from omnitok import pipeline
box = {}
t = threading.Thread(target=lambda: box.setdefault("pool", pipeline.fork_pool(2)))
t.start(); t.join()  # the forking thread is gone: PR_SET_PDEATHSIG would have killed the workers
pool = box["pool"]
print(*[w.pid for w in pool._workers], flush=True)
print(pool.submit(os.getpid, ()).get() in [w.pid for w in pool._workers], flush=True)
busy = [pool.submit(time.sleep, (30,)) for _ in range(2)]  # busy workers: an idle one ends at its pipe's EOF
time.sleep(0.3)
print("busy", flush=True)
time.sleep(60)
"""


def test_workers_forked_by_another_thread_die_with_the_parent_by_the_lifeline(tmp_path):
    """A caller's thread that forks and ends: the workers outlive it and answer, then die with the
    process (the lifeline pipe, not PR_SET_PDEATHSIG, which watches the forking thread)."""
    p = subprocess.Popen([sys.executable, "-c", LIFELINE_SCRIPT], stdout=subprocess.PIPE, text=True, cwd=tmp_path)
    workers: list[psutil.Process] = []
    try:
        workers = [psutil.Process(int(pid)) for pid in p.stdout.readline().split()]
        assert len(workers) == 2
        assert p.stdout.readline().strip() == "True"  # the workers answers after its forking thread ended
        assert p.stdout.readline().strip() == "busy"
        p.kill()
        p.wait(timeout=10)
        left = _gone_within(workers, 2.0)
        assert not left, [(w.pid, w.status()) for w in left]
    finally:
        for w in _alive(workers):
            w.kill()
        if p.poll() is None:
            p.kill()
        p.wait(timeout=10)
        p.stdout.close()


def _dead_pid() -> int:
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(done.stdout)
    assert not psutil.pid_exists(pid)
    return pid


def test_stale_temporary_outputs_are_swept_only_when_safe(tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_bytes(ROW)
    out = tmp_path / "out.jsonl"
    out.write_bytes(b"before\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    victim = elsewhere / "victim"
    victim.write_bytes(b"keep\n")
    machine = output._machine()
    dead, live = _dead_pid(), os.getpid()
    stale = f".out.jsonl.omnitok.{dead}.{machine}.0123abcd.tmp"
    kept = [
        f".out.jsonl.omnitok.{live}.{machine}.0123abcd.tmp",  # a live process's (this test's)
        f".out.jsonl.omnitok.{dead}.{'0' * 8 if machine != '0' * 8 else '1' * 8}.0123abcd.tmp",  # another host's
        f".other.jsonl.omnitok.{dead}.{machine}.0123abcd.tmp",  # another output's
        f".out.jsonl.{dead}.tmp",  # not omnitok's pattern
        "out.jsonl.tmp",
    ]
    for name in [stale, *kept]:
        (tmp_path / name).write_bytes(b"partial\n")
    link = f".out.jsonl.omnitok.{dead}.{machine}.feedf00d.tmp"  # a symlink of the pattern: not followed
    os.symlink(victim, tmp_path / link)
    r = omnitok("count", "-m", "gpt-4o", "--format", "jsonl", str(src), "-o", str(out))
    assert r.code == 0, r.err
    assert b'"tokens"' in out.read_bytes()
    assert sorted(os.listdir(tmp_path)) == sorted(["in.jsonl", "out.jsonl", "elsewhere", link, *kept])
    assert victim.read_bytes() == b"keep\n"
    for name in kept:
        assert (tmp_path / name).read_bytes() == b"partial\n"


def test_an_output_name_near_the_limit_is_written(tmp_path):
    """The temporary name is cut to fit: a 246-byte output name (past the limit with the pid and
    random parts added) is written, and the next run's sweep finds a dead run's file of it."""
    src = tmp_path / "in.jsonl"
    src.write_bytes(ROW)
    out = tmp_path / ("n" * 240 + ".jsonl")
    stale = output.tmp_name(out.name).replace(f".{os.getpid()}.", f".{_dead_pid()}.")
    assert len(stale.encode()) <= output.NAME_MAX and re.fullmatch(
        r"\.n+\.omnitok\.\d+\.[0-9a-f]{8}\.[0-9a-f]{8}\.tmp", stale
    )
    (tmp_path / stale).write_bytes(b"partial\n")
    r = omnitok("count", "-m", "gpt-4o", "--format", "jsonl", str(src), "-o", str(out))
    assert r.code == 0, r.err
    assert sorted(os.listdir(tmp_path)) == sorted(["in.jsonl", out.name])


def test_a_sigterm_reaching_a_fresh_fork_before_its_reset_takes_the_default_action():
    """A SIGTERM to the whole group can reach a worker forked a moment before, while it still has
    the command line's handler (forks.stay_with_parent sets the default action back): it raised
    Terminated inside threading's after-fork hook, and a fresh-clone CI run's
    SIGTERM-to-the-group case above printed "Exception ignored in: <function _after_fork ...>"
    and a traceback beside "omnitok: terminated". Such a process now dies by the signal, silent."""
    code = (
        "import os, signal, time\n"
        "from omnitok.cli import app\n"
        "app._MAIN_PID = os.getpid()\n"
        "signal.signal(signal.SIGTERM, app._on_sigterm)\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    os.kill(os.getpid(), signal.SIGTERM)\n"
        "    time.sleep(2)\n"
        "    os._exit(7)\n"
        "_, status = os.waitpid(pid, 0)\n"
        "print(os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGTERM)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert (r.returncode, r.stdout, r.stderr) == (0, "True\n", "")
