"""Modules stay one concept each (issue 24 item 3): no module of omnitok/ is over 600 lines; a
module that grows past it is split by what it does, not cut at the line."""

from __future__ import annotations

from pathlib import Path

import omnitok

PACKAGE = Path(omnitok.__file__).parent
LIMIT = 600


def test_no_module_is_over_600_lines():
    long = []
    for path in sorted(PACKAGE.rglob("*.py")):
        n = len(path.read_text(encoding="utf-8").splitlines())
        if n > LIMIT:
            long.append(f"{path.relative_to(PACKAGE)}: {n} lines")
    assert long == []
