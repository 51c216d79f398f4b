"""benchmarks/count_phases.py (make bench's `fixed costs` step) wraps the pipeline's own functions
to time each phase of a count: run here on a small file, so that a change to what it wraps
(a signature, a name) fails a test, not the next `make bench`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_count_phases_times_every_phase_of_a_sharded_count(tmp_path):
    path = tmp_path / "c.jsonl"
    rows = (json.dumps({"id": i, "text": f"record {i} " * 40}) + "\n" for i in range(8000))
    path.write_text("".join(rows))  # 3 MB: 3 shards, so the pool starts
    cmd = [sys.executable, "-m", "benchmarks.count_phases", "count", "-m", "gpt-4o", "-q", "-j", "2", str(path)]
    r = subprocess.run([*cmd, "-o", "/dev/null"], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-3000:]
    report = json.loads(r.stderr.splitlines()[-1])  # its report: stderr's last line
    names = [name for name, _, _ in report["marks"]]
    assert report["code"] == 0
    for phase in ("imported", "engine loaded", "warmed up, forking", "forked", "last result merged", "done"):
        assert phase in names, names
