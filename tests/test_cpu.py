"""omnitok.cpu: the idle cores --jobs auto takes, from /proc/stat over a window (not the load
average, which lags a minute behind)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from omnitok import cpu

STAT = """cpu  {u0} 0 {s0} 999 0 0 0 0 0 0
cpu0 {u0} 0 {s0} 500 7 1 2 3 0 0
cpu1 {u1} 0 {s1} 499 0 0 0 0 0 0
intr 1 2 3
ctxt 12345
"""


def _stat(tmp_path, u0, s0, u1, s1, name="stat"):
    path = tmp_path / name
    path.write_text(STAT.format(u0=u0, s0=s0, u1=u1, s1=s1))
    return str(path)


def test_sample_sums_busy_ticks_of_the_allowed_cpus(tmp_path, monkeypatch):
    tick = os.sysconf("SC_CLK_TCK")
    path = _stat(tmp_path, 100, 50, 300, 20)
    monkeypatch.setattr(cpu, "_allowed", lambda: {0, 1})
    # cpu0: user 100 + system 50 + irq 1 + softirq 2 + steal 3; cpu1: 300 + 20; idle/iowait not busy
    assert cpu.sample(path)[1] == pytest.approx((156 + 320) / tick)
    monkeypatch.setattr(cpu, "_allowed", lambda: {1})  # taskset: only cpu1 is ours
    assert cpu.sample(path)[1] == pytest.approx(320 / tick)


@pytest.mark.parametrize("text", ["", "intr 1 2\n", "cpu0 a b c d e f g\n", "cpu0 1 2\n"])
def test_an_unreadable_stat_is_none(tmp_path, text):
    path = tmp_path / "stat"
    path.write_text(text)
    assert cpu.sample(str(path)) is None
    assert cpu.sample(str(tmp_path / "missing")) is None


@pytest.mark.parametrize(("own_s", "others"), [(0.0, 1.5), (0.5, 1.0), (2.0, 0.0)])
def test_others_busy_takes_this_process_off(tmp_path, monkeypatch, own_s, others):
    """1.5 core-seconds busy over a 1 s window, of which this process used own_s."""
    tick = os.sysconf("SC_CLK_TCK")
    monkeypatch.setattr(cpu, "_allowed", lambda: {0, 1})
    end = _stat(tmp_path, int(1.5 * tick) - 6, 0, 0, 0)  # + irq, softirq and steal: 6 ticks
    mine = sum(os.times()[:2])
    start = (time.monotonic() - 1.0, 0.0, mine - own_s)
    assert cpu.others_busy(start, end) == pytest.approx(others, abs=0.05)


def test_this_process_s_live_children_are_not_other_work(tmp_path, monkeypatch):
    """A child this process started (the early reference's process, loading its engine) is its
    own work: its CPU time, read from /proc/PID/stat of the pids /proc/self/task/*/children
    lists, is taken off with this process's."""
    tick = os.sysconf("SC_CLK_TCK")
    monkeypatch.setattr(cpu, "_allowed", lambda: {0, 1})
    end = _stat(tmp_path, int(1.5 * tick) - 6, 0, 0, 0)  # 1.5 core-seconds busy in all
    (tmp_path / "self" / "task" / "1").mkdir(parents=True)
    (tmp_path / "self" / "task" / "1" / "children").write_text("4242 4343 9999\n")  # 9999: ended
    for pid, (utime, stime) in {"4242": (tick // 2, tick // 4), "4343": (tick // 4, 0)}.items():
        (tmp_path / pid).mkdir()
        (tmp_path / pid / "stat").write_text(f"{pid} (py thon) R 1 " + " ".join(["0"] * 9) + f" {utime} {stime} 0 0\n")
    mine = sum(os.times()[:2])
    assert cpu.sample(end)[2] == pytest.approx(mine + 1.0, abs=0.05)  # the children's 1.0 s
    start = (time.monotonic() - 1.0, 0.0, mine)  # the children began in the window
    assert cpu.others_busy(start, end) == pytest.approx(0.5, abs=0.05)


def test_a_short_window_is_waited_out_and_a_stale_one_renewed(monkeypatch):
    now = cpu.sample()
    if now is None:
        pytest.skip("no /proc/stat here")
    t = time.monotonic()
    assert cpu.others_busy(now) is not None
    assert time.monotonic() - t >= cpu.MIN_WINDOW
    stale = (now[0] - 60, now[1] - 1000.0, now[2])  # a minute old, busy all the while
    t = time.monotonic()
    busy = cpu.others_busy(stale)
    assert time.monotonic() - t >= cpu.MIN_WINDOW  # measured afresh, not over the minute
    assert busy < cpu.cores() + 0.5


def test_without_proc_stat_the_load_average_decides(monkeypatch):
    monkeypatch.setattr(cpu, "others_busy", lambda: None)
    monkeypatch.setattr(cpu, "cores", lambda: 4)
    monkeypatch.setattr(os, "getloadavg", lambda: (2.2, 0.0, 0.0))
    assert cpu.idle_cores() == 2
    monkeypatch.delattr(os, "getloadavg")
    assert cpu.idle_cores() == 4


def test_a_busy_core_is_seen_at_once(tmp_path):
    """A process spinning on one core, started just now (the load average has not seen it yet):
    a fresh process's idle_cores leaves that core out."""
    if cpu.sample() is None or cpu.cores() < 2:
        pytest.skip("needs /proc/stat and 2 cores")
    spin = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.3)
        code = "import omnitok.cpu as c, time; time.sleep(0.5); print(round(c.others_busy(), 1), c.cores())"
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
        busy, cores = out.split()
        assert float(busy) >= 0.8  # the spinner's core (and whatever else runs here)
        assert float(busy) <= int(cores) + 0.3
    finally:
        spin.kill()
        spin.wait()
