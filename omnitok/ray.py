"""omnitok on a Ray cluster, through Ray Data.

In your own pipeline (each returns a lazy `ray.data.Dataset`, one result row per input row):

    import ray, omnitok.ray
    ds = ray.data.read_parquet("s3://bucket/corpus/")
    counts = omnitok.ray.count(ds, model="gpt-4o", field="text")           # id, tokens, ...
    counts = omnitok.ray.count(ds, model="gpt-4o", field="text", keep=True)  # the row + its count
    omnitok.ray.compress(ds, model="gpt-4o", budget=500)
    omnitok.ray.validate(ds, metrics=("rouge-l", "compression"), model="gpt-4o")

Over files, as `omnitok count --ray` runs it (`count_paths`): the inputs (Parquet or JSONL files
or directories, local or any URI a pyarrow filesystem reads) are cut into shards (runs of Parquet
row groups, byte ranges of JSONL files cut at line starts); each actor reads, parses, extracts,
counts and writes its shards' results as `DIR/part-NNNNN.parquet` (named by shard, so a retried
shard overwrites its own file) and sends back only its totals; the summary is the sum.

Every worker builds the engine-neutral core (omnitok.engine_core) once, from a plain spec, never
from a pickled tokenizer. Tokenizer files reach workers as bundles (`omnitok bundle create`):
the driver ships each archive through the object store with its sha256, and each node installs it
once into its own $OMNITOK_HOME, verified, so an air-gapped cluster counts exactly. Before the job,
one probe task builds the core on a worker: a missing asset (a model whose tokenizer files no
bundle brought) fails there, with one message, instead of in every task or as silent estimates.

A bad record is an error row, as locally. A worker that dies is restarted by Ray and its shard
rerun (Ray Data's actor pools default to max_restarts=-1, max_task_retries=-1); each shard's
result is kept once, so totals stay exact.
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter as Tally
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

try:
    import ray
    import ray.data
except ImportError as e:  # pragma: no cover - the extra is missing
    raise ImportError("omnitok.ray needs Ray Data: pip install 'omnitok[ray]'") from e

from omnitok import engine_core
from omnitok.engine_core import BundleAsset, Spec
from omnitok.errors import AssetError, InputError, UsageError

__all__ = [
    "RunResult",
    "ShardCounter",
    "StageBatches",
    "compress",
    "connect",
    "count",
    "count_paths",
    "validate",
]

SHARD_BYTES = 32 << 20  # text per shard: large enough that a task's overhead is noise
MAX_LISTED = 1000  # error messages and offenders kept for the report; the totals count all


# --- the cluster ------------------------------------------------------------------------------------


def connect(address: str | None = "auto", **init) -> bool:
    """Join the Ray cluster at `address` (ray://host:10001, host:6379); "auto" (or None) joins the
    running one (RAY_ADDRESS, or one started by `ray start` on this host) and else starts a local
    Ray with `init`'s ray.init arguments; "local" always starts a local Ray. Nothing happens when
    Ray is already initialised. Returns whether this call initialised Ray."""
    if ray.is_initialized():
        return False
    init.setdefault("include_dashboard", False)
    init.setdefault("logging_level", "warning")
    joining = {k: v for k, v in init.items() if k not in ("num_cpus", "object_store_memory")}
    if address not in (None, "", "auto", "local"):
        ray.init(address=address, **joining)
    elif address != "local" and os.environ.get("RAY_ADDRESS"):
        ray.init(address="auto", **joining)  # the cluster named there, or an error
    elif address != "local" and _local_cluster():
        try:
            ray.init(address="auto", **joining)
        except ConnectionError:  # what a stopped cluster left behind
            ray.init(**init)
    else:
        ray.init(**init)
    return True


def _local_cluster() -> bool:
    """Whether `ray start` left a cluster on this host to join."""
    import tempfile

    return os.path.exists(os.path.join(tempfile.gettempdir(), "ray", "ray_current_cluster"))


def _slots(num_cpus: float) -> int:
    cpus = ray.cluster_resources().get("CPU", 1)
    return max(1, int(cpus / num_cpus + 1e-9)) if num_cpus > 0 else max(1, int(cpus))


def _quiet_data() -> None:
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False


# --- assets: bundles shipped to workers, checked before the job -------------------------------------


def ship_bundles(bundles: Iterable[str | BundleAsset]) -> tuple[tuple[BundleAsset, ...], list]:
    """Read each bundle here, check it is one (its manifest) and its sha256 (when a BundleAsset pins
    one), and put its bytes in the object store: (assets for the spec, object refs for workers).
    A missing or wrong bundle fails here, before anything runs."""
    import tempfile

    from omnitok.bundle.install import Limits, read_manifest
    from omnitok.bundle.sources import BundleError

    assets, refs = [], []
    for b in bundles:
        path, pinned = (b.path, b.sha256) if isinstance(b, BundleAsset) else (str(b), None)
        try:
            data = engine_core.read_uri(path)
        except (OSError, ValueError) as e:
            raise AssetError(
                f"{path}: cannot read the bundle ({e})", hint="`omnitok bundle create` makes one"
            ) from None
        digest = engine_core.sha256_bytes(data)
        if pinned and pinned != digest:
            raise AssetError(f"{path}: sha256 {digest}, expected {pinned}")
        with tempfile.NamedTemporaryFile(suffix=".bundle") as tmp:
            tmp.write(data)
            tmp.flush()
            try:
                read_manifest(tmp.name, Limits())
            except BundleError as e:
                raise AssetError(str(e).replace(tmp.name, path)) from None
        assets.append(BundleAsset(path, digest))
        refs.append(ray.put(data))
    return tuple(assets), refs


def _probe(spec: dict, payloads: list) -> dict:
    """On a worker: build the core as the job's actors will, and say how it counts and what it
    warned about (a step down to an estimate for want of files is a warning locally)."""
    from omnitok import notices
    from omnitok.errors import OmnitokError

    said: list[str] = []
    notices.reset()
    notices.set_handler(said.append)
    try:
        core = engine_core.build(spec, ray.get(list(payloads)) if payloads else None)
    except OmnitokError as e:
        return {"error": e.message, "hint": e.hint, "kind": type(e).__name__}
    finally:
        notices.set_handler(None)
    meta = getattr(core, "meta", None)
    core.close()
    return {"meta": meta, "notices": said, "node": ray.get_runtime_context().get_node_id()}


def check_workers(
    spec: Spec, payloads: list, *, runtime_env: dict | None = None, num_cpus: float = 1, allow_estimate: bool = False
) -> dict | None:
    """Build the core once on a worker before the job; raise one clear error if it cannot be built
    there, or if it would count with an estimate because tokenizer files are missing (unless
    `allow_estimate`). Returns the planned meta (count) or None."""
    task = ray.remote(_probe).options(num_cpus=min(num_cpus, 1), runtime_env=runtime_env, max_retries=3)
    got = ray.get(task.remote(spec.to_dict(), payloads))
    if "error" in got:
        cls = UsageError if got["kind"] in ("UsageError", "UnknownModelError", "UnknownEncodingError") else AssetError
        raise cls(f"on the Ray workers: {got['error']}", hint=got.get("hint"))
    meta = got["meta"]
    if meta is not None and not meta.get("exact") and got["notices"] and not allow_estimate:
        raise AssetError(
            f"on the Ray workers: {got['notices'][0]}",
            hint="ship the tokenizer files as a bundle (omnitok bundle create; bundles=[...] / --bundle), "
            "or allow_estimate=True to count with the estimate",
        )
    return meta


# --- in a user's pipeline ---------------------------------------------------------------------------


class StageBatches:
    """The callable class `map_batches` runs: the core, built once per actor from the spec."""

    def __init__(self, spec: dict, payloads: Sequence = (), keep: bool = False):
        self.core = engine_core.build(spec, ray.get(list(payloads)) if payloads else None)
        self.keep = keep

    def __call__(self, table):
        out = self.core.table(table)
        if not self.keep:
            return out
        for name in out.column_names:
            if name == "id" and "id" in table.column_names:
                continue
            if name in table.column_names:
                raise UsageError(f"keep=True: the input already has a column {name!r}")
            table = table.append_column(out.schema.field(name), out[name])
        return table


def _map(
    ds,
    spec: Spec,
    bundles,
    *,
    keep: bool,
    num_cpus: float,
    concurrency: int | None,
    batch_size: int | None,
    runtime_env: dict | None,
    allow_estimate: bool,
    probe: bool,
):
    assets, refs = ship_bundles(bundles)
    if assets:
        spec = Spec(**{**spec.to_dict(), "bundles": assets})
    if probe:
        check_workers(spec, refs, runtime_env=runtime_env, num_cpus=num_cpus, allow_estimate=allow_estimate)
    size = concurrency or _slots(num_cpus)
    return ds.map_batches(
        StageBatches,
        fn_constructor_kwargs={"spec": spec.to_dict(), "payloads": refs, "keep": keep},
        batch_format="pyarrow",
        batch_size=batch_size,
        compute=ray.data.ActorPoolStrategy(min_size=1, max_size=size),
        num_cpus=num_cpus,
        runtime_env=runtime_env,
    )


def _fields(field: str | Sequence[str] | None) -> tuple[str, ...] | None:
    if field is None:
        return None
    parts = [f.strip() for f in field.split(",")] if isinstance(field, str) else list(field)
    return tuple(p for p in parts if p) or None


def count(
    ds,
    model: str | None = None,
    *,
    field: str | Sequence[str] | None = None,
    id_field: str | None = "id",
    keep: bool = False,
    bundles: Iterable[str | BundleAsset] = (),
    num_cpus: float = 1,
    concurrency: int | None = None,
    batch_size: int | None = 4096,
    runtime_env: dict | None = None,
    allow_estimate: bool = False,
    probe: bool = True,
    **options,
):
    """Token counts of a Dataset's rows: id, tokens, model, encoding, strategy, exact, error_band,
    error (a row whose text cannot be counted has `error` set and no tokens). With keep=True, the
    input row with those columns added. `field`: the text column or dotted path (several: a
    comma-separated string or a list; None: `messages` or `text`). `options`: Counter's (encoding,
    engine, tokenizer, special_tokens, online, strict, cache; cache is off unless given)."""
    spec = Spec("count", model, options, _fields(field), id_field)
    return _map(
        ds,
        spec,
        bundles,
        keep=keep,
        num_cpus=num_cpus,
        concurrency=concurrency,
        batch_size=batch_size,
        runtime_env=runtime_env,
        allow_estimate=allow_estimate,
        probe=probe,
    )


def compress(
    ds,
    model: str | None = None,
    *,
    budget: int | None = None,
    ratio: float | None = None,
    target_compression: float | None = None,
    query: str | None = None,
    context_field: str | None = None,
    query_field: str | None = None,
    id_field: str | None = "id",
    keep: bool = False,
    bundles: Iterable[str | BundleAsset] = (),
    num_cpus: float = 1,
    concurrency: int | None = None,
    batch_size: int | None = 256,
    runtime_env: dict | None = None,
    allow_estimate: bool = False,
    probe: bool = True,
    **options,
):
    """Each row's context compressed to the budget (`omnitok compress`'s result fields, plus id and
    error). `options`: Compressor's (method: bm25 unless given, gap_marker, dedup, engine, ...)."""
    from omnitok.compression import check_budget

    check_budget(budget, ratio, target_compression)
    params = {"budget": budget, "ratio": ratio, "target_compression": target_compression, "query": query}
    spec = Spec("compress", model, options, (context_field, query_field), id_field, params)
    return _map(
        ds,
        spec,
        bundles,
        keep=keep,
        num_cpus=num_cpus,
        concurrency=concurrency,
        batch_size=batch_size,
        runtime_env=runtime_env,
        allow_estimate=allow_estimate,
        probe=probe,
    )


def validate(
    ds,
    *,
    metrics: Sequence[str] = ("rouge-l",),
    model: str | None = None,
    original_field: str = "original",
    compressed_field: str = "compressed",
    id_field: str | None = "id",
    stem: bool = False,
    min_rouge_l: float | None = None,
    max_ratio: float | None = None,
    min_bertscore: float | None = None,
    bertscore_model: str | None = None,
    rescale: bool = False,
    keep: bool = False,
    bundles: Iterable[str | BundleAsset] = (),
    num_cpus: float = 1,
    concurrency: int | None = None,
    batch_size: int | None = 1024,
    runtime_env: dict | None = None,
    allow_estimate: bool = False,
    probe: bool = True,
    **options,
):
    """Per-pair scores of (original, compressed) rows (`omnitok validate`'s, with `passed` and the
    gates failed); aggregate them with Ray Data (`.mean("rouge_l_f1")`) or in pandas. BERTScore's
    idf needs the whole set, so it is not offered here."""
    from omnitok.validation import METRICS, Thresholds

    for m in metrics:
        if m not in METRICS:
            raise UsageError(f"unknown metric {m!r}; available: {', '.join(METRICS)}")
    Thresholds(min_rouge_l, max_ratio, min_bertscore)
    params = {
        "metrics": list(metrics),
        "stem": stem,
        "min_rouge_l": min_rouge_l,
        "max_ratio": max_ratio,
        "min_bertscore": min_bertscore,
        "bertscore_model": bertscore_model,
        "rescale": rescale,
    }
    spec = Spec("validate", model, options, (original_field, compressed_field), id_field, params)
    return _map(
        ds,
        spec,
        bundles,
        keep=keep,
        num_cpus=num_cpus,
        concurrency=concurrency,
        batch_size=batch_size,
        runtime_env=runtime_env,
        allow_estimate=allow_estimate,
        probe=probe,
    )


# --- over files: `omnitok count --ray` --------------------------------------------------------------

_JSONL = {".jsonl", ".ndjson", ".json"}
_PARQUET = {".parquet", ".pq"}


def _format_of(path: str, input_format: str) -> str | None:
    from omnitok.io.readers import detect_format

    if input_format != "auto":
        return input_format
    name = path.lower().removesuffix(".gz")
    suffix = os.path.splitext(name)[1]
    return detect_format(path) if suffix in _JSONL | _PARQUET else None


def list_inputs(paths: Sequence[str], input_format: str = "auto") -> list[tuple[str, str, str, int]]:
    """(source name, where workers read it: an absolute path or a URI, format, size) of every input
    file, in order: files as
    given, directories walked (sorted; hidden and _-prefixed names skipped, and with
    input_format auto only .jsonl/.ndjson/.json/.parquet/.pq, optionally .gz). Missing inputs and
    text inputs fail here."""
    import pyarrow.fs as pafs

    if input_format not in ("auto", "jsonl", "parquet"):
        raise UsageError(f"on Ray the inputs are Parquet or JSONL, not {input_format!r}")
    if not paths:
        raise UsageError("give input files or directories (stdin cannot be spread over a cluster)")
    out = []
    for p in paths:
        if p == "-":
            raise UsageError("stdin cannot be spread over a Ray cluster; give files or directories")
        fs, where = engine_core.filesystem(p)
        info = fs.get_file_info(where)
        if info.type == pafs.FileType.NotFound:
            raise InputError(p, None, "no such file or directory")
        if info.type == pafs.FileType.Directory:
            found = []
            for f in fs.get_file_info(pafs.FileSelector(where, recursive=True)):
                rel = os.path.relpath(f.path, where)
                if f.type != pafs.FileType.File or any(part.startswith((".", "_")) for part in rel.split(os.sep)):
                    continue
                fmt = _format_of(f.path, input_format)
                if fmt is not None:
                    uri = f.path if "://" not in p else _source(p, where, f.path)
                    found.append((_source(p, where, f.path), uri, fmt, f.size))
            out += sorted(found, key=lambda t: t[1])
            continue
        fmt = _format_of(where, input_format) or "text"
        if fmt == "text":
            raise UsageError(f"{p}: on Ray the inputs are Parquet or JSONL (name them so, or pass --input-format)")
        out.append((p, where if "://" not in p else p, fmt, info.size))
    if not out:
        raise UsageError(f"no Parquet or JSONL files in {', '.join(paths)}")
    return out


def _source(given: str, base: str, path: str) -> str:
    """A directory member's name in messages: as the directory was given, plus its relative path."""
    rel = os.path.relpath(path, base)
    return given.rstrip("/") + "/" + rel.replace(os.sep, "/")


def _plan(files, extractor, shard_bytes: int) -> list[dict]:
    """The shards of the inputs, in input order. Parquet: runs of row groups (footers read here,
    so each shard knows its first row); a file that cannot be read as Parquet, or lacks the text
    column, is one error shard, as it is one error record locally. JSONL: byte ranges (a shard
    owns the lines that start in it), or the whole file when gzipped."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from omnitok.records import ExtractError

    shards: list[dict] = []
    for source, path, fmt, size in files:
        base = {"source": source, "path": path, "fmt": fmt}
        if fmt == "parquet":
            fs, where = engine_core.filesystem(path)
            try:
                with fs.open_input_file(where) as f:
                    pf = pq.ParquetFile(f)
                    meta = pf.metadata
                    names = pf.schema_arrow.names
            except (pa.ArrowException, OSError, EOFError) as e:
                shards.append({**base, "error": f"not a readable Parquet file: {e}"})
                continue
            try:
                extractor.for_columns(names)
            except ExtractError as e:
                shards.append({**base, "error": str(e)})
                continue
            row, groups, acc, first = 0, [], 0, 0
            for g in range(meta.num_row_groups):
                rg = meta.row_group(g)
                groups.append(g)
                acc += rg.total_byte_size
                row += rg.num_rows
                if acc >= shard_bytes:
                    shards.append({**base, "groups": groups, "first_row": first})
                    groups, acc, first = [], 0, row
            if groups or not shards or shards[-1]["path"] != path:
                shards.append({**base, "groups": groups, "first_row": first})
        elif path.lower().endswith(".gz") or size <= shard_bytes:
            shards.append({**base, "start": 0, "end": size, "gz": path.lower().endswith(".gz")})
        else:
            for start in range(0, size, shard_bytes):
                shards.append({**base, "start": start, "end": min(size, start + shard_bytes), "gz": False})
    for i, s in enumerate(shards):
        s["index"] = i
    return shards


def _newlines(path: str, start: int, end: int) -> int:
    """Line ends in [start, end) of a file (the line numbers of the shards after it)."""
    fs, where = engine_core.filesystem(path)
    n, pos = 0, start
    with fs.open_input_file(where) as f:
        while pos < end:
            block = f.read_at(min(16 << 20, end - pos), pos)
            if not block:
                break
            n += block.count(b"\n")
            pos += len(block)
    return n


def _number_lines(shards: list[dict], num_cpus: float, runtime_env: dict | None) -> None:
    """Give every JSONL byte-range shard the count of line ends before it, from one pass over the
    ranges before the last of each file (run as tasks, in parallel)."""
    task = ray.remote(_newlines).options(num_cpus=min(num_cpus, 1), runtime_env=runtime_env, max_retries=3)
    todo, refs = [], []
    for i, s in enumerate(shards):
        if s["fmt"] != "jsonl" or s.get("gz") or "start" not in s:
            continue
        s["lines_before"] = 0
        nxt = shards[i + 1] if i + 1 < len(shards) else None
        if nxt is not None and nxt["path"] == s["path"] and "start" in nxt:
            todo.append(i)
            refs.append(task.remote(s["path"], s["start"], s["end"]))
    counts = dict(zip(todo, ray.get(refs), strict=True))
    before = 0
    for i, s in enumerate(shards):
        if "lines_before" not in s:
            continue
        if s["start"] == 0:
            before = 0
        s["lines_before"] = before
        before += counts.get(i, 0)


def _owned(f, start: int, end: int, size: int) -> tuple[bytes, bool]:
    """The bytes of the lines that start in [start, end), and whether the first starts at `start`."""
    if start == 0:
        p, block = 0, f.read_at(end, 0)
    else:
        block = f.read_at(end - start + 1, start - 1)  # with the byte before: does a line start at `start`?
        j = block.find(b"\n")
        if j < 0 or start + j >= end:
            return b"", True
        p, block = j, block[j + 1 :]
    if end < size and not block.endswith(b"\n"):  # the last line runs past the range: read it whole
        parts, pos = [block], end
        while pos < size:
            chunk = f.read_at(min(1 << 20, size - pos), pos)
            if not chunk:
                break
            k = chunk.find(b"\n")
            if k >= 0:
                parts.append(chunk[: k + 1])
                break
            parts.append(chunk)
            pos += len(chunk)
        block = b"".join(parts)
    return block, p == 0


def read_shard(shard: dict, extractor) -> Iterator:
    """The records of one shard, read by the local reader's own code (InputStream's jsonl_lines
    and parquet_group), numbered as the whole file numbers them."""
    import gzip
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    from omnitok.io.readers import InputStream
    from omnitok.records import ExtractError, Record

    source, path = shard["source"], shard["path"]
    if "error" in shard:
        yield Record(0, source, None, error=shard["error"])
        return
    reader = InputStream([path], extractor, shard["fmt"])
    fs, where = engine_core.filesystem(path)
    if shard["fmt"] == "parquet":
        try:
            f = fs.open_input_file(where)
            pf = pq.ParquetFile(f)
            ex, tops = extractor.for_columns(pf.schema_arrow.names)
        except (pa.ArrowException, OSError, EOFError, ExtractError) as e:  # the file changed since the plan
            yield Record(
                0, source, None, error=str(e) if isinstance(e, ExtractError) else f"not a readable Parquet file: {e}"
            )
            return
        names = set(pf.schema_arrow.names)
        columns = sorted(set(tops) | ({ex.id_field} & names if ex.id_field else set()))
        row = shard["first_row"]
        with f:
            for g in shard["groups"]:
                yield from reader.parquet_group(pf, g, ex, columns, source, row)
                row += pf.metadata.row_group(g).num_rows
        return
    if shard["gz"]:
        with fs.open_input_stream(where) as raw, gzip.GzipFile(fileobj=raw, mode="rb") as gz:
            try:
                yield from reader.jsonl_lines(io.BufferedReader(gz, 1 << 20), source)
            except (OSError, EOFError) as e:
                yield reader.shard_error(source, reader.lines_read, e)
        return
    with fs.open_input_file(where) as f:
        data, at_start = _owned(f, shard["start"], shard["end"], f.size())
    offset = shard.get("lines_before", 0) + (0 if at_start else 1)
    for rec in reader.jsonl_lines(io.BytesIO(data), source, shard["start"] == 0):
        rec.line += offset
        yield rec


class ShardCounter:
    """The callable class of `count_paths`: per shard, read, count, write DIR/part-<shard>.parquet,
    and give back the shard's totals as one JSON row (never texts, never the rows)."""

    def __init__(self, spec: dict, payloads: Sequence, output: str, max_tokens: int | None = None, skip_errors=False):
        self.core = engine_core.build(spec, ray.get(list(payloads)) if payloads else None)
        self.output = output.rstrip("/")
        self.max_tokens = max_tokens
        self.skip_errors = skip_errors

    def __call__(self, batch):
        import pyarrow as pa

        stats = [json.dumps(self.shard(s)) for s in batch.to_pylist()]
        return pa.table({"stats": pa.array(stats, pa.string())})

    def shard(self, shard: dict) -> dict:
        table = self.core.records(read_shard(shard, self.core.extractor()), where=True)
        stats = shard_stats(table, shard["index"], self.max_tokens)
        if self.skip_errors:
            import pyarrow.compute as pc

            table = table.filter(pc.is_null(table["error"]))
        self.write(table, shard["index"])
        return stats

    def write(self, table, index: int) -> None:
        """As DIR/part-<index>.parquet: under a hidden name first and renamed on a local disk, so a
        worker killed while writing leaves no half file that a reader of DIR would take."""
        import uuid

        import pyarrow.fs as pafs
        import pyarrow.parquet as pq

        fs, base = engine_core.filesystem(self.output)
        final = f"{base}/part-{index:05d}.parquet"
        if isinstance(fs, pafs.LocalFileSystem):
            tmp = f"{base}/.part-{index:05d}.{uuid.uuid4().hex[:8]}.tmp"
            pq.write_table(table, tmp, filesystem=fs)
            fs.move(tmp, final)
        else:  # an object store: an object appears whole when its upload completes
            pq.write_table(table, final, filesystem=fs)


def shard_stats(table, index: int, max_tokens: int | None) -> dict:
    """A shard's totals from its result table: records, errors, tokens, a histogram of counts (for
    exact percentiles), the first errors and offenders, and how rows were counted."""
    import pyarrow.compute as pc

    ok = table.filter(pc.is_null(table["error"]))
    bad = table.filter(pc.is_valid(table["error"]))
    hist = pc.value_counts(ok["tokens"]).to_pylist() if ok.num_rows else []
    how = Tally()
    if ok.num_rows:
        keys = ["model", "encoding", "strategy", "exact", "error_band"]
        for row in ok.group_by(keys, use_threads=False).aggregate([("tokens", "count")]).to_pylist():
            how[json.dumps([row[k] for k in keys])] += row["tokens_count"]
    out = {
        "index": index,
        "records": table.num_rows,
        "errors": bad.num_rows,
        "total_tokens": pc.sum(ok["tokens"]).as_py() or 0,
        "hist": [[h["values"], h["counts"]] for h in hist],
        "how": dict(how),
        "error_list": [
            f"{r['source']}:{r['line']}: {r['error']}" if r["line"] is not None else f"{r['source']}: {r['error']}"
            for r in bad.slice(0, MAX_LISTED).select(["source", "line", "error"]).to_pylist()
        ],
    }
    if max_tokens is not None:
        over = ok.filter(pc.greater(ok["tokens"], max_tokens))
        out["over_limit"] = over.num_rows
        out["offenders"] = [
            [f"{r['source']}:{r['line']}", r["id"], r["tokens"]]
            for r in over.slice(0, MAX_LISTED).select(["source", "line", "id", "tokens"]).to_pylist()
        ]
    return out


@dataclass
class RunResult:
    """What `count_paths` did: the summary (as `omnitok count --summary` prints it, plus where the
    results are and how long each part took), the first errors and --max-tokens offenders."""

    summary: dict
    errors: list[str] = field(default_factory=list)
    offenders: list[tuple[str, object, int]] = field(default_factory=list)


def _merge(stats: list[dict], planned: dict, max_tokens: int | None):
    from omnitok.summary import _META_KEYS, Summary

    s = Summary(max_tokens_limit=max_tokens)
    planned_key = json.dumps([planned.get(k) for k in _META_KEYS])
    for st in sorted(stats, key=lambda x: x["index"]):
        s.records += st["records"]
        s.errors += st["errors"]
        s.counted += st["records"] - st["errors"]
        s.total_tokens += st["total_tokens"]
        for value, n in st["hist"]:
            s._hist[value] += n
        for key, n in st["how"].items():
            if key != planned_key:
                s._how[tuple(json.loads(key))] += n
        room = MAX_LISTED - len(s.error_list)
        s.error_list += st["error_list"][: max(room, 0)]
        if max_tokens is not None:
            s.over_limit += st["over_limit"]
            room = MAX_LISTED - len(s.offenders)
            s.offenders += [tuple(o) for o in st["offenders"][: max(room, 0)]]
    return s


def count_paths(
    paths: Sequence[str],
    output: str,
    model: str | None = None,
    *,
    field: str | Sequence[str] | None = None,
    id_field: str | None = "id",
    input_format: str = "auto",
    bundles: Iterable[str | BundleAsset] = (),
    address: str | None = "auto",
    num_cpus: float = 1,
    concurrency: int | None = None,
    shard_bytes: int = SHARD_BYTES,
    max_tokens: int | None = None,
    skip_errors: bool = False,
    runtime_env: dict | None = None,
    allow_estimate: bool = False,
    init: dict | None = None,
    batch_class: type = ShardCounter,
    **options,
) -> RunResult:
    """Count Parquet / JSONL inputs (files, directories, URIs) on Ray; results to the Parquet
    dataset DIR (`output`: part-NNNNN.parquet in input order, the columns of `omnitok count -o
    x.parquet` less pos), totals in the returned summary. `address`: "auto" joins a running
    cluster or starts a local Ray (with `init`'s ray.init arguments). Error rows are written
    unless `skip_errors`; either way the summary counts them. `batch_class`: the callable class
    the actors run (a ShardCounter subclass)."""
    from omnitok.records import Extractor

    t0 = time.perf_counter()
    if shard_bytes < 1:
        raise UsageError("shard_bytes must be at least 1")
    fields = _fields(field)
    files = list_inputs(paths, input_format)
    shown, output = output, output if "://" in output else os.path.abspath(output)  # workers run elsewhere
    _prepare_output(output)
    connect(address, **(init or {}))
    _quiet_data()
    assets, refs = ship_bundles(bundles)
    spec = Spec("count", model, options, fields, id_field, bundles=assets)
    planned = check_workers(spec, refs, runtime_env=runtime_env, num_cpus=num_cpus, allow_estimate=allow_estimate)
    t_ready = time.perf_counter()
    shards = _plan(files, Extractor(fields, None, id_field), shard_bytes)
    _number_lines(shards, num_cpus, runtime_env)
    t_planned = time.perf_counter()
    size = min(len(shards), concurrency or _slots(num_cpus))
    ds = ray.data.from_items(shards, override_num_blocks=len(shards)).map_batches(
        batch_class,
        fn_constructor_kwargs={
            "spec": spec.to_dict(),
            "payloads": refs,
            "output": output,
            "max_tokens": max_tokens,
            "skip_errors": skip_errors,
        },
        batch_format="pyarrow",
        batch_size=1,
        compute=ray.data.ActorPoolStrategy(size=size),
        num_cpus=num_cpus,
        runtime_env=runtime_env,
    )
    stats = [json.loads(r["stats"]) for r in ds.take_all()]
    t_done = time.perf_counter()
    _sweep(output)
    seen = Tally(st["index"] for st in stats)
    if sorted(seen) != list(range(len(shards))) or any(n != 1 for n in seen.values()):
        raise RuntimeError(f"Ray returned shards {sorted(seen.elements())}, expected each of 0..{len(shards) - 1} once")
    s = _merge(stats, planned, max_tokens)
    summary = {
        **s.to_dict(),
        **s.meta(planned),
        "output": shown,
        "files": len(files),
        "shards": len(shards),
        "workers": size,
        "seconds": {
            "startup": round(t_ready - t0, 3),
            "plan": round(t_planned - t_ready, 3),
            "run": round(t_done - t_planned, 3),
            "total": round(t_done - t0, 3),
        },
    }
    return RunResult(summary, list(s.error_list), list(s.offenders))


def _sweep(output: str) -> None:
    """Remove what workers killed while writing left (hidden .part-*.tmp files; readers skip them)."""
    import pyarrow.fs as pafs

    fs, base = engine_core.filesystem(output)
    for f in fs.get_file_info(pafs.FileSelector(base)):
        name = f.base_name
        if name.startswith(".part-") and name.endswith(".tmp"):
            fs.delete_file(f.path)


def _prepare_output(output: str) -> None:
    """The results directory: created; refused if it holds files already (a rerun would mix)."""
    import pyarrow.fs as pafs

    fs, base = engine_core.filesystem(output)
    info = fs.get_file_info(base)
    if info.type == pafs.FileType.File:
        raise UsageError(f"{output}: is a file; --ray writes a directory of Parquet files")
    if info.type == pafs.FileType.Directory and fs.get_file_info(pafs.FileSelector(base)):
        raise UsageError(f"{output}: the directory is not empty; give a new or empty one")
    fs.create_dir(base, recursive=True)
