"""The serve benchmark's server-CPU column (issue 26 item 4) counts every thread the server ran,
those that have ended included: tiktoken's encode_ordinary_batch runs a thread pool a call, and
counting only the live threads (/proc/PID/task) had missed most of the baselines' CPU."""

from __future__ import annotations

import subprocess
import sys

import pytest

from benchmarks.serve_bench import cpu_seconds

BURN = """
import sys, threading, time
def burn():
    end = time.process_time() + 0.3
    while time.process_time() < end:
        pass
t = threading.Thread(target=burn)
t.start()
t.join()
print("done", flush=True)
sys.stdin.read()
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_cpu_of_threads_that_ended_is_counted():
    proc = subprocess.Popen([sys.executable, "-c", BURN], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline() == "done\n"  # the burning thread has ended; the process lives
        used = cpu_seconds(proc.pid)
    finally:
        proc.stdin.close()
        proc.wait(30)
    assert used is not None and used >= 0.25
