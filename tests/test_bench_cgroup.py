"""benchmarks/cgroup.py: the memory a command is charged for in a cgroup of its own, and its limit."""

from __future__ import annotations

import sys

import pytest

from benchmarks.cgroup import charged

GROW = [sys.executable, "-c", "b = bytearray(60_000_000); print(len(b))"]  # 60 MB written (zeroed)


def test_the_charge_is_what_the_command_holds_and_the_limit_kills_past_it():
    c = charged(GROW, 300)
    if c is None:
        pytest.skip("no memory cgroup can be made here (no memory controller, or not root)")
    assert (c.returncode, c.stdout, c.oom_kills) == (0, b"60000000\n", 0)
    assert 60 <= c.peak_mb < 120  # the bytearray and the interpreter, each page once
    over = charged(GROW, 40)
    assert (over.returncode, over.stdout, over.oom_kills) == (-9, b"", 1)
    assert 35 <= over.peak_mb <= 40  # held at the limit
