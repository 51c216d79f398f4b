"""The memory a command is charged for in a memory cgroup of its own: what a container's memory
limit holds it to (Linux cgroup v1's `memory` controller, or cgroup v2's).

RSS summed over a process tree counts every page forked processes share once per process; the
kernel charges a cgroup each page once (the anonymous memory of every process in it, and the page
cache its reads first bring in). `charged(cmd, limit_mb)` runs `cmd` alone in a fresh cgroup under
that limit (swap too, where the kernel accounts it, so the limit cannot be met by swapping out)
and gives its return code, output, the peak charge and how many of its processes the kernel
killed for memory; None where no memory cgroup can be made here (no
controller mounted, not root)."""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Charge:
    returncode: int
    stdout: bytes
    wall: float
    peak_mb: float  # the cgroup's peak charge (v1 memory.max_usage_in_bytes, v2 memory.peak)
    oom_kills: int  # the kernel's memory kills in the cgroup (memory.oom_control / memory.events)


def _mounts() -> list[tuple[str, str, str]]:
    """(mount point, type, options) of every cgroup mount."""
    found = []
    with open("/proc/mounts", encoding="utf-8") as f:
        for line in f:
            fields = line.split()
            if len(fields) >= 4 and fields[2] in ("cgroup", "cgroup2"):
                found.append((fields[1].replace("\\040", " "), fields[2], fields[3]))
    return found


def _own_path(v2: bool) -> str:
    """This process's cgroup path in the memory hierarchy (v1) or the unified one (v2)."""
    with open("/proc/self/cgroup", encoding="utf-8") as f:
        for line in f:
            _, controllers, path = line.rstrip("\n").split(":", 2)
            if (v2 and controllers == "") or (not v2 and "memory" in controllers.split(",")):
                return path
    return "/"


def _parent() -> tuple[Path, bool] | None:
    """Where a child cgroup with a memory limit can be made: (directory, whether v2)."""
    for point, kind, options in _mounts():
        if kind == "cgroup" and "memory" in options.split(","):
            for base in (Path(point + _own_path(False)), Path(point)):
                if os.access(base, os.W_OK) and (base / "memory.limit_in_bytes").exists():
                    return base, False
    for point, kind, _ in _mounts():
        if kind == "cgroup2":
            for base in (Path(point + _own_path(True)), Path(point)):
                with contextlib.suppress(OSError):
                    if "memory" in (base / "cgroup.subtree_control").read_text().split() and os.access(base, os.W_OK):
                        return base, True
    return None


def _counter(text: str, key: str) -> int:
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name == key:
            return int(value)
    return 0


def charged(cmd: list[str], limit_mb: int, **kw) -> Charge | None:
    """Run `cmd` in a memory cgroup of its own limited to `limit_mb` MB (see the module's doc)."""
    found = _parent()
    if found is None:
        return None
    parent, v2 = found
    group = parent / f"omnitok-bench-{os.getpid()}-{time.monotonic_ns()}"
    try:
        group.mkdir()
    except OSError:
        return None
    limit = str(limit_mb * 1_000_000)  # MB as the other tables give them: 10^6 bytes
    try:
        if v2:
            (group / "memory.max").write_text(limit)
            with contextlib.suppress(OSError):
                (group / "memory.swap.max").write_text("0")
        else:
            (group / "memory.limit_in_bytes").write_text(limit)
            with contextlib.suppress(OSError):  # only where the kernel accounts swap
                (group / "memory.memsw.limit_in_bytes").write_text(limit)
        procs = str(group / "cgroup.procs")

        def enter() -> None:  # in the child, before exec: the command and all it starts are charged here
            with open(procs, "w", encoding="ascii") as f:
                f.write(str(os.getpid()))

        start = time.perf_counter()
        run = subprocess.run(cmd, preexec_fn=enter, stdout=subprocess.PIPE, check=False, **kw)  # noqa: PLW1509
        wall = time.perf_counter() - start
        if v2:
            peak = int((group / "memory.peak").read_text())
            kills = _counter((group / "memory.events").read_text(), "oom_kill")
        else:
            peak = int((group / "memory.max_usage_in_bytes").read_text())
            kills = _counter((group / "memory.oom_control").read_text(), "oom_kill")
        return Charge(run.returncode, run.stdout, wall, peak / 1e6, kills)
    finally:
        for _ in range(50):  # the cgroup goes once its last process has been reaped
            try:
                group.rmdir()
                break
            except FileNotFoundError:
                break
            except OSError:
                time.sleep(0.1)
