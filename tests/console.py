"""Run the installed `omnitok` console script as a user's shell would: a real process, real
exit code, real stdout/stderr. Usage errors and tracebacks are only honest when seen this way."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

OMNITOK = str(Path(sys.executable).with_name("omnitok"))


@dataclass
class Run:
    code: int
    out: bytes
    err: str


def omnitok(*args: str, stdin: bytes | None = b"", env: dict | None = None, cwd=None, timeout: float = 120) -> Run:
    full_env = {**os.environ, **(env or {})}
    p = subprocess.run(
        [OMNITOK, *args],
        input=stdin,
        capture_output=True,
        env=full_env,
        cwd=cwd,
        timeout=timeout,
    )
    return Run(p.returncode, p.stdout, p.stderr.decode("utf-8", "replace"))
