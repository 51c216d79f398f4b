"""Over files: `omnitok count --ray` (`count_paths`). The inputs are listed and cut into shards
(omnitok.io.shards), each counted by an actor of `ShardCounter` and written as a part file
(omnitok.io.parts), the totals summed (engine_core.merge_stats), the parts committed whole."""

from __future__ import annotations

import json
import os
import time
from collections import Counter as Tally
from collections.abc import Sequence
from dataclasses import dataclass, field

import ray
import ray.data

from omnitok import engine_core
from omnitok.engine_core import Spec
from omnitok.errors import OmnitokError
from omnitok.io import parts
from omnitok.io import shards as sharding
from omnitok.options import CountOptions

from .cluster import RayOptions, connect, quiet, slots
from .stages import check_workers, fields_of, options_of, ray_options_of, ship_bundles

# --- over files: `omnitok count --ray` --------------------------------------------------------------


def _number_lines(shards: list, ro: RayOptions, fs) -> None:
    """Line numbers for JSONL byte ranges: the line ends of every range but the last of each file,
    counted by tasks in parallel (a cheap pass: bytes.count over the range)."""
    todo = sharding.ranges_to_count(shards)
    task = ray.remote(sharding.newlines).options(
        num_cpus=min(ro.num_cpus, 1), runtime_env=ro.runtime_env, max_retries=3
    )
    refs = [task.remote(shards[i].path, shards[i].start, shards[i].end, fs) for i in todo]
    sharding.number_lines(shards, dict(zip(todo, ray.get(refs), strict=True)))


class ShardCounter:
    """The callable class of `count_paths`: per shard (a Shard of omnitok.io.shards), read, count,
    write part-<shard>.parquet into `output` (the run's directory under DIR/_temporary), and give
    back the shard's totals as one JSON row (never texts, never the rows). `fs`: the filesystem
    the inputs' paths are in (None: local paths and URIs)."""

    def __init__(self, spec: dict, payloads: Sequence, output: str, max_tokens=None, skip_errors=False, fs=None):
        self.core = engine_core.build(spec, ray.get(list(payloads)) if payloads else None)
        self.output = output.rstrip("/")
        self.max_tokens = max_tokens
        self.skip_errors = skip_errors
        self.fs = fs

    def __call__(self, batch):
        import pyarrow as pa

        got = [self.shard(sharding.Shard.from_dict(json.loads(s))) for s in batch["shard"].to_pylist()]
        return pa.table({"stats": pa.array([json.dumps(st) for st in got], pa.string())})

    def shard(self, shard: sharding.Shard) -> dict:
        table = self.core.records(sharding.shard_records(shard, self.core.extractor(), self.fs), where=True)
        stats = engine_core.shard_stats(table, shard.index, self.max_tokens)
        if self.skip_errors:
            import pyarrow.compute as pc

            table = table.filter(pc.is_null(table["error"]))
        self.write(table, shard.index)
        return stats

    def write(self, table, index: int) -> None:
        parts.write_part(table, self.output, index)


def _worker_error(e: BaseException, output: str) -> BaseException:
    """What a failed job raises here: an omnitok error from a worker as itself, a worker's OSError
    (a full disk, a read-only output) as one OutputError line; anything else as Ray raised it."""
    from omnitok.io.output import OutputError

    seen: set[int] = set()
    todo: list = [e]
    while todo:
        x = todo.pop(0)
        if x is None or id(x) in seen:
            continue
        seen.add(id(x))
        inner = getattr(x, "cause", None)  # a RayTaskError: the worker's own exception
        if isinstance(inner, BaseException):
            todo.insert(0, inner)
            continue
        if isinstance(x, OmnitokError):
            return x
        if isinstance(x, OSError) and x.errno:
            name = x.filename if isinstance(x.filename, str) else ""
            where = name if name.startswith("/") or "://" in name else output  # Ray's rewraps put text there
            return OutputError(f"{where}: {os.strerror(x.errno)}")
        todo += [x.__cause__, x.__context__]
    return e


@dataclass
class RunResult:
    """What `count_paths` did: the summary (as `omnitok count --summary` prints it, plus where the
    results are and how long each part took), the first errors and --max-tokens offenders."""

    summary: dict
    errors: list[str] = field(default_factory=list)
    offenders: list[tuple[str, object, int]] = field(default_factory=list)


def count_paths(
    paths: Sequence[str],
    output: str,
    model: str | None = None,
    *,
    field: str | Sequence[str] | None = None,
    id_field: str | None = "id",
    input_format: str = "auto",
    max_tokens: int | None = None,
    skip_errors: bool = False,
    filesystem=None,
    batch_class: type = ShardCounter,
    options: CountOptions | None = None,
    ray_options: RayOptions | None = None,
    **kwargs,
) -> RunResult:
    """Count Parquet / JSONL inputs (files, directories, URIs; or paths in `filesystem`, a pyarrow
    FileSystem, e.g. an S3FileSystem with its own endpoint and keys) on Ray; results to the Parquet
    dataset DIR (`output`: part-NNNNN.parquet in input order, the columns of `omnitok count -o
    x.parquet` less pos, then an empty _SUCCESS; nothing is moved into DIR before every shard is
    done), totals in the returned summary. DIR must be new or empty (a stale _temporary of a
    killed run is removed, with a warning). `ray_options`: how it runs (RayOptions: its address
    "auto" joins a running cluster or starts a local Ray with its `init`). Error rows are written
    unless `skip_errors`; either way the summary counts them. `batch_class`: the callable class
    the actors run (a ShardCounter subclass). `options`: a CountOptions, used as given; or keyword
    options, Counter's (cache off unless given)."""
    t0 = time.perf_counter()
    ro = ray_options_of(ray_options)
    fields = fields_of(field)
    files = sharding.list_inputs(paths, input_format, filesystem)
    shown, output = output, output if "://" in output else os.path.abspath(output)  # workers run elsewhere
    run = parts.prepare_output(output)  # DIR/_temporary/<run>: the parts until the commit
    try:
        connect(ro.address, quiet=not ro.verbose, **ro.ray_init())
        with quiet(ro.verbose):
            assets, refs = ship_bundles(ro.bundles)
            spec = Spec("count", model, options_of(CountOptions, options, kwargs), fields, id_field, bundles=assets)
            planned = check_workers(spec, refs, ro=ro)
            t_ready = time.perf_counter()
            shards = sharding.plan_shards(files, fields, id_field, ro.shard_bytes, filesystem)
            _number_lines(shards, ro, filesystem)
            t_planned = time.perf_counter()
            size = min(len(shards), ro.concurrency or slots(ro.num_cpus))
            args = {"output": run, "max_tokens": max_tokens, "skip_errors": skip_errors, "fs": filesystem}
            stats = _run_shards(
                shards, batch_class, {"spec": spec.to_dict(), "payloads": refs, **args}, size, ro, shown
            )
        t_done = time.perf_counter()
        parts.commit_parts(output, run, len(shards))
    except BaseException:
        parts.discard_run(output, run)
        raise
    s = engine_core.merge_stats(stats, planned, max_tokens)
    seconds = {"startup": t_ready - t0, "plan": t_planned - t_ready, "run": t_done - t_planned, "total": t_done - t0}
    summary = {
        **s.to_dict(),
        **s.meta(planned),
        "output": shown,
        "files": len(files),
        "shards": len(shards),
        "workers": size,
        "seconds": {k: round(v, 3) for k, v in seconds.items()},
    }
    return RunResult(summary, list(s.error_list), list(s.offenders))


def _run_shards(shards: list, batch_class: type, kwargs: dict, size: int, ro: RayOptions, shown: str) -> list[dict]:
    """Each shard through an actor of `batch_class` once; their totals, checked to be each once."""
    # A worker's own exception, not Ray Data's UserCodeException (which keeps only its text): an
    # OSError from a part's write becomes one line here (_worker_error).
    ctx = ray.data.DataContext.get_current()
    original, ctx.raise_original_map_exception = ctx.raise_original_map_exception, True
    items = [{"shard": json.dumps(s.to_dict())} for s in shards]
    ds = ray.data.from_items(items, override_num_blocks=len(shards)).map_batches(
        batch_class,
        fn_constructor_kwargs=kwargs,
        batch_format="pyarrow",
        batch_size=1,
        compute=ray.data.ActorPoolStrategy(size=size),
        num_cpus=ro.num_cpus,
        runtime_env=ro.runtime_env,
    )
    try:
        stats = [json.loads(r["stats"]) for r in ds.take_all()]
    except Exception as e:
        raise _worker_error(e, shown) from None
    finally:
        ctx.raise_original_map_exception = original
    seen = Tally(st["index"] for st in stats)
    if sorted(seen) != list(range(len(shards))) or any(n != 1 for n in seen.values()):
        raise RuntimeError(f"Ray returned shards {sorted(seen.elements())}, expected each of 0..{len(shards) - 1} once")
    return stats
