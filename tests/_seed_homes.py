"""Fresh OMNITOK_HOMEs without the first-run derivation: a template home whose `assets/derived/`
omnitok itself filled once (the rank files' fast forms: rank_cache's .ranks, rank_table's
.rtable, ~0.3 s of CPU an encoding), hard-linked into each fresh home of tests that are not about
that derivation. A linked file is what the product would have written there (the same name,
bytes and mode; omnitok replaces a derived file by rename, never in place, so a run cannot change
the template through a link)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest


def derived_template(root: Path, encodings: tuple[str, ...] = ("o200k_base",)) -> Path:
    """`root` made a home whose assets/derived/ holds what counting with `encodings` derives,
    written by omnitok's own code (the pybpe engine's load: the .rtable, and the .ranks it is
    built from)."""
    from omnitok.assets.store import find_tiktoken_file
    from omnitok.tokenizers.openai_encodings import ENCODINGS
    from omnitok.tokenizers.pybpe import PyBpeEngine

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("OMNITOK_HOME", str(root))
        for name in encodings:
            spec = ENCODINGS[name]
            path, _ = find_tiktoken_file(spec.file, spec.url, spec.sha256)
            PyBpeEngine(spec, path)
    return root


def seed(home: Path, template: Path) -> None:
    """Link (copy where links fail) the template's derived files into `home`."""
    src = template / "assets" / "derived"
    dst = home / "assets" / "derived"
    dst.mkdir(parents=True, exist_ok=True)
    for f in src.iterdir():
        if f.name.startswith("."):
            continue
        try:
            os.link(f, dst / f.name)
        except OSError:
            shutil.copy2(f, dst / f.name)
