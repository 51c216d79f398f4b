"""How many of this process's cores other work leaves idle now: what `--jobs auto` takes.

The one-minute load average (what `--jobs auto` read before) lags: right after another job ends,
it still counts that job for a minute, and a count then ran on one core of two idle ones (make
bench's default run did, just after its baseline). Here the CPUs' busy time is read from
/proc/stat (only the CPUs this process may run on; steal counts as busy: a hypervisor's other
guests hold the core) at two moments, this process's own CPU time (and its live children's)
taken off, over the window
between them: by default from `import omnitok` to the call, which for a command is the start-up
it spends anyway (imports, loading the tokenizer), so the measure costs no extra time. A window
shorter than MIN_WINDOW is waited out; one older than MAX_WINDOW is stale, and a fresh one of
MIN_WINDOW is taken. Off Linux (no /proc/stat): the load average, else every core.
"""

from __future__ import annotations

import os
import sys
import time

MIN_WINDOW = 0.1  # seconds: at 100 ticks a second, a tenth of a core's resolution
MAX_WINDOW = 5.0
STAT = "/proc/stat"
_PR_SET_PDEATHSIG = 1


def cores() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _allowed() -> set[int] | None:
    try:
        return set(os.sched_getaffinity(0))
    except AttributeError:
        return None


def sample(path: str = STAT) -> tuple[float, float, float] | None:
    """(monotonic seconds, CPU-seconds the allowed CPUs have been busy since boot, the CPU seconds
    of this process and its live children (_own)), or None where /proc/stat cannot be read or
    parsed."""
    try:
        with open(path, "rb") as f:
            lines = f.read().splitlines()
        tick = os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, AttributeError):
        return None
    allowed = _allowed()
    busy = 0
    seen = False
    for line in lines:
        if not line.startswith(b"cpu") or line[3:4] in (b" ", b""):
            continue  # only the per-CPU lines ("cpu0 ..."), not the sum ("cpu ...")
        fields = line.split()
        try:
            cpu = int(fields[0][3:])
            user, nice, system, _idle, _iowait, irq, softirq, *rest = map(int, fields[1:])
        except ValueError:
            return None
        if allowed is not None and cpu not in allowed:
            continue
        steal = rest[0] if rest else 0
        busy += user + nice + system + irq + softirq + steal
        seen = True
    if not seen or tick <= 0:
        return None
    own = _own(os.path.dirname(path) or "/proc", tick)
    return time.monotonic(), busy / tick, own  # the time last: the window starts when sampling ends


def _own(proc: str, tick: int) -> float:
    """CPU seconds of this process and of its live children, from the /proc at `proc`: work this
    process started is not other work (tokenizers.early_reference's process loads its engine
    while `--jobs auto` looks; counted as another's, it took a core from the count)."""
    own = os.times()
    total = 0
    try:
        tasks = os.listdir(os.path.join(proc, "self", "task"))
    except OSError:
        tasks = []
    for tid in tasks:
        try:
            with open(os.path.join(proc, "self", "task", tid, "children"), "rb") as f:
                children = f.read().split()
        except OSError:
            continue
        for pid in children:
            try:
                with open(os.path.join(proc, pid.decode(), "stat"), "rb") as f:
                    fields = f.read().rsplit(b")", 1)[1].split()
                total += int(fields[11]) + int(fields[12])  # utime, stime (stat's fields 14, 15)
            except (OSError, ValueError, IndexError):  # ended meanwhile, or not a stat
                continue
    return own.user + own.system + total / tick


_EPOCH = sample()  # when omnitok was imported: the start of the default window


def others_busy(start: tuple[float, float, float] | None = None, path: str = STAT) -> float | None:
    """Cores' worth of CPU that other processes used from `start` (default: the import of omnitok)
    to now; None where it cannot be measured."""
    start = start if start is not None else _EPOCH
    now = sample(path)
    if now is None or start is None:
        return None
    if now[0] - start[0] > MAX_WINDOW:  # stale: a fresh window
        start = now
    wait = MIN_WINDOW - (now[0] - start[0])
    if wait > 0:
        time.sleep(wait)
        now = sample(path)
        if now is None:
            return None
    wall = now[0] - start[0]
    return max(0.0, (now[1] - start[1]) - (now[2] - start[2])) / wall


def idle_cores() -> int:
    """The cores other work leaves idle (rounded to the nearest whole one), at least 1."""
    total = cores()
    busy = others_busy()
    if busy is None:
        try:
            busy = os.getloadavg()[0]
        except (AttributeError, OSError):  # not on this platform
            return total
    return max(1, min(total, int(total - busy + 0.5)))


def die_with_parent(sig: int) -> bool:
    """In a child: have Linux send `sig` to this process when its parent exits (PR_SET_PDEATHSIG);
    False where that is not available. "Exits" is the exit of the parent's *thread* that started
    this process, so the caller forks from a thread that lives as long as the parent (its main
    thread), and checks os.getppid() after, for a parent already gone before the request."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False
