"""What the Ray tests (tests/test_ray.py, tests/test_ray_runs.py) share: the corpus they count,
the local pipeline's rows it is checked against, and the settings of their runs. The cluster
itself is tests/conftest.py's `ray_cluster`: one local Ray a test process, whichever Ray files
it runs. `ray`, `oray` and `RayOptions` are imported on first use: every test process collects
these files, one runs them (Ray and Ray Data take ~1.5 s of CPU to import)."""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import random

import pytest


class _OnFirstUse:
    """A module, or a name in one, imported when first used (an attribute, a call)."""

    def __init__(self, module: str, name: str | None = None, also: tuple[str, ...] = ()):
        self._where = (module, name, also)

    def _target(self):
        module, name, also = self._where
        for extra in also:
            importlib.import_module(extra)
        found = importlib.import_module(module)
        return getattr(found, name) if name else found

    def __getattr__(self, attr: str):
        if attr.startswith("_"):  # pytest's collection probes (__test__, _pytestfixturefunction, ...)
            raise AttributeError(attr)
        return getattr(self._target(), attr)

    def __call__(self, *args, **kwargs):
        return self._target()(*args, **kwargs)


def _has_ray_data() -> bool:
    """Whether Ray and its Data package are installed, found without importing them (finding a
    submodule's spec imports its package)."""
    spec = importlib.util.find_spec("ray")
    return spec is not None and any(
        os.path.isfile(os.path.join(d, "data", "__init__.py")) for d in spec.submodule_search_locations or ()
    )


ray = _OnFirstUse("ray", also=("ray.data",))
oray = _OnFirstUse("omnitok.ray")
RayOptions = _OnFirstUse("omnitok.ray", "RayOptions")

needs_ray = pytest.mark.skipif(  # without the ray extra the engine-core tests still run
    not _has_ray_data(),
    reason="omnitok.ray needs Ray Data: pip install 'omnitok[ray]' (the test extra has it)",
)

MODEL = "gpt-4o"
CPUS = 0.5  # a worker's share: 4 actors fit on 2 CPUs, reads keep room
# Each actor is a new worker process (~2 s of CPU to start, more with a Hugging Face tokenizer to
# build): two where shards spread over a pool is part of what is tested (parts in input order, a
# worker that dies while the other goes on, a bundle installed once whatever the workers), one
# where a stage's results are what is tested.
ACTORS = 2
# Several shards per file (3 per Parquet file, 13 of the JSONL one), not 76 tiny ones: with 4000,
# test_count_paths_equals_local_pipeline took 12 s alone and 75 s in the parallel suite.
SHARD_BYTES = 16000
WORDS = [
    "the",
    "quick",
    "brown",
    "fox",
    "jumps",
    "over",
    "lazy",
    "dog",
    "中文",
    "émoji",
    "🙂",
    "tokens",
    "count",
    "<|endoftext|>",
]


def text(rng: random.Random) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(0, 40)))


def write_corpus(d) -> None:
    """Three Parquet files (several row groups, null texts) and a JSONL file with every kind of
    bad line (invalid JSON, a JSON string, a missing field, blank lines, a BOM) and chats."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = random.Random(7)
    (d / "pq").mkdir()
    for k in range(3):
        rows = [{"id": f"p{k}-{i}", "text": None if i % 37 == 5 else text(rng), "n": i} for i in range(300)]
        pq.write_table(pa.Table.from_pylist(rows), d / "pq" / f"part{k}.parquet", row_group_size=40)
    lines = []
    for i in range(1500):
        r = i % 40
        if r == 3:
            lines.append(b"{bad json")
        elif r == 7:
            lines.append(b"")
        elif r == 9:
            lines.append(b'"a bare string"')
        elif r == 11:
            lines.append(json.dumps({"id": i, "body": "no text here"}).encode())
        elif r == 13:
            msgs = [{"role": "system", "content": text(rng)}, {"role": "user", "content": text(rng)}]
            lines.append(json.dumps({"id": i, "messages": msgs}).encode())
        else:
            lines.append(json.dumps({"id": i, "text": text(rng)}, ensure_ascii=False).encode())
    (d / "chats.jsonl").write_bytes(b"\xef\xbb\xbf" + b"\n".join(lines) + b"\n")


_LOCAL: dict = {}


def local(paths, model=MODEL, **options):
    """count_files' rows (source, line, id, tokens, error) for `paths`, the reference every Ray
    result is checked against; computed once a process for the same arguments (the corpus is
    written once and never changed)."""
    from omnitok.api import count_files

    key = (tuple(str(p) for p in paths), model, tuple(sorted(options.items())))
    if key not in _LOCAL:
        _LOCAL[key] = [
            (
                c.record.source,
                c.record.line,
                None if c.record.id is None else str(c.record.id),
                c.tokens,
                c.record.error,
            )
            for c in count_files([str(p) for p in paths], model, jobs=1, cache="off", **options)
        ]
    return list(_LOCAL[key])


def written(out):
    import pyarrow.dataset as pads

    t = pads.dataset(str(out), format="parquet").to_table()
    return [(r["source"], r["line"], r["id"], r["tokens"], r["error"]) for r in t.to_pylist()]


def totals(rows):
    ok = [r for r in rows if r[4] is None]
    return len(rows), len(rows) - len(ok), sum(r[3] for r in ok)
