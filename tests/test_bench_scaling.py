"""benchmarks/scaling.py (`make bench-scaling`, issue 26's many-core run): run here at a small size
so that the script a lent machine runs in one call works, and its figures are the real ones."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from .conftest import reference_encoding

ROOT = Path(__file__).resolve().parents[1]


def test_scaling_counts_at_each_jobs_value_and_loads_each_serve_size(tmp_path):
    out = tmp_path / "scaling.md"
    cmd = [sys.executable, "-m", "benchmarks.scaling", "--mb", "2", "--jobs", "2,1", "--workers", "1"]
    cmd += ["--runs", "1", "--duration", "0.3", "--work", str(tmp_path), "--out", str(out)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=180, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-3000:]
    text = out.read_text()
    assert r.stdout.strip() == text.strip()
    assert [m[0] for m in re.findall(r"^\| (\d+) \| [\d.]+ \| [\d.]+ \| \d+ \| \*\*([\d.]+)x\*\* \|$", text, re.M)] == [
        "1",
        "2",
    ]
    enc = reference_encoding("o200k_base")
    corpus = tmp_path / "corpus-scaling-2mb.jsonl"
    expected = sum(len(enc.encode_ordinary(json.loads(line)["text"])) for line in corpus.open())
    assert f"Token totals: {expected:,} at every --jobs value." in text
    serve = re.findall(r"^\| 1 \| 8 \| (\d+) \| \*\*1\.00x\*\* \| [\d.]+ \| [\d.]+ \| (\d+) \|$", text, re.M)
    assert len(serve) == 1 and int(serve[0][0]) > 0 and serve[0][1] == "0", text


def test_scaling_refuses_a_bad_list(tmp_path):
    cmd = [sys.executable, "-m", "benchmarks.scaling", "--jobs", "0,2", "--work", str(tmp_path)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert r.returncode == 2 and "positive integers" in r.stderr
