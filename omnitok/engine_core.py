"""The engine-neutral core: a batch of records in, an Arrow table of results out.

Front ends that run omnitok somewhere else than this process (Ray workers, today) build the core
once per worker from a plain `Spec` (a model id, options, field names, and the tokenizer bundles
with their sha256), never from a pickled tokenizer, and call it on each batch:

    core = build(Spec("count", model="gpt-4o", fields=("text",)))
    results = core.table(arrow_table)        # one result row per input row, in order

The stages are the library's own: counting goes through `pipeline.count_records` with the
`api.Counter`'s strategy (the code the local pipeline runs), records are extracted by
`records.Extractor` (or compress's extractor), compress through `compression.Compressor` and
validate through `validation.score_pair`. There is no second implementation here, only the
conversions between Arrow and records, so a worker's numbers are the local pipeline's.

`install_bundles` puts tokenizer bundles into this host's asset store ($OMNITOK_HOME) once,
verified by their sha256, so that an air-gapped worker counts exactly with files it never
downloaded.

Over files (local paths or any URI a pyarrow filesystem reads), the inputs are cut into shards
(`plan_shards`), each read by the local reader's own code (`read_shard`), counted by the core,
written as a part file (`write_part`) and summed (`shard_stats`, `merge_stats`): the engine-neutral
half of `omnitok count --ray`, which omnitok.ray schedules.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections import Counter as Tally
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from .errors import InputError, UsageError
from .records import ExtractError, Record

STAGES = ("count", "compress", "validate")


@dataclass(frozen=True)
class BundleAsset:
    """A tokenizer bundle archive, by where it is and the sha256 of the archive file."""

    path: str
    sha256: str


@dataclass(frozen=True)
class Spec:
    """Everything a worker needs to build the core: plain data (JSON round-trips it).

    options: the stage's options object (omnitok.options): a CountOptions (count), a
    CompressOptions (compress) or a ValidateOptions (validate), as the command line and the
    library build it; `to_dict()` carries it as its `to_dict()`. A mapping is taken too, the
    loose form of before: count: CountOptions' fields; compress: CompressOptions' fields;
    validate: the compression metric's CountOptions fields, with the validate settings in
    `params`. Made from a mapping, a worker does not cache (cache off) and compress scores with
    BM25, unless the mapping says otherwise.
    fields: count: the text fields (None: auto); validate: (original, compressed);
    compress: (context field or None, query field or None).
    params: the stage's per-call parameters (compress: budget / ratio / target_compression /
    query; validate, with a mapping of options: metrics, stem, min_rouge_l, max_ratio,
    min_bertscore, bertscore_model, rescale).
    """

    stage: str = "count"
    model: str | None = None
    options: Any = None
    fields: tuple[str | None, ...] | None = None
    id_field: str | None = "id"
    params: dict = field(default_factory=dict)
    bundles: tuple[BundleAsset, ...] = ()

    def __post_init__(self):
        if self.stage not in STAGES:
            raise UsageError(f"stage must be one of {', '.join(STAGES)}, not {self.stage!r}")
        object.__setattr__(self, "options", _stage_options(self.stage, self.options, self.params))
        if self.fields is not None:
            object.__setattr__(self, "fields", tuple(self.fields))
        object.__setattr__(
            self, "bundles", tuple(b if isinstance(b, BundleAsset) else BundleAsset(**b) for b in self.bundles)
        )
        try:
            json.dumps(self.to_dict())
        except (TypeError, ValueError) as e:
            raise UsageError(f"a worker spec must be plain data (JSON): {e}") from None

    def to_dict(self) -> dict:
        return {
            "stage": self.stage,
            "model": self.model,
            "options": self.options.to_dict(),
            "fields": self.fields,
            "id_field": self.id_field,
            "params": dict(self.params),
            "bundles": tuple(asdict(b) for b in self.bundles),
        }

    @classmethod
    def from_dict(cls, data: dict) -> Spec:
        from .options import OPTIONS

        data = dict(data)
        stage = data.get("stage", "count")
        if isinstance(data.get("options"), dict) and stage in OPTIONS:
            data["options"] = OPTIONS[stage].from_dict(data["options"])  # to_dict's whole object
        return cls(**data)


def _stage_options(stage: str, options, params: dict):
    """The stage's options object from what a Spec was given (see Spec)."""
    from .options import OPTIONS, CountOptions, ValidateOptions

    cls = OPTIONS[stage]
    if isinstance(options, cls):
        return options
    if options is not None and not isinstance(options, dict):
        raise TypeError(f"a {stage} spec's options must be a {cls.__name__} or a mapping, not {type(options).__name__}")
    loose = {"cache": "off", **(options or {})}
    if stage == "compress":
        return cls.from_dict({"method": "bm25", **loose})
    if stage == "count":
        return cls.from_dict(loose)
    p = params or {}
    return ValidateOptions(
        metrics=p.get("metrics") or ("rouge-l",),
        stem=bool(p.get("stem", False)),
        min_rouge_l=p.get("min_rouge_l"),
        max_ratio=p.get("max_ratio"),
        min_bertscore=p.get("min_bertscore"),
        bertscore_model=p.get("bertscore_model"),
        rescale=bool(p.get("rescale", False)),
        cache="off",
        count=CountOptions.from_dict(loose),
    )


# --- records <-> Arrow --------------------------------------------------------------------------


def table_records(table, extractor, source: str | None = None, first_line: int | None = None) -> Iterator[Record]:
    """The records of an Arrow table's rows, extracted as the Parquet reader does (one record a
    row; a row whose text cannot be taken out is an error record). Lines are numbered from
    `first_line` when given."""
    names = table.column_names
    try:
        ex, tops = extractor.for_columns(names)
    except ExtractError as e:
        for i in range(table.num_rows):
            yield Record(i, source, None if first_line is None else first_line + i, error=str(e))
        return
    if tops is not None:
        wanted = set(tops) | ({ex.id_field} & set(names) if ex.id_field else set())
        table = table.select([n for n in names if n in wanted])
    for i, obj in enumerate(table.to_pylist()):
        yield ex.record(i, source, None if first_line is None else first_line + i, obj)


def _str_id(value: Any) -> str | None:
    return None if value is None else str(value)  # as the local Parquet output writes ids


class Core:
    """One stage, built once: `table(arrow) -> arrow` and `records(records) -> arrow`. `meta`: how
    its counter counts (model, encoding, strategy, exact), None where it counts nothing."""

    stage = ""
    meta: dict | None = None

    def __init__(self, spec: Spec):
        self.spec = spec

    def extractor(self):
        raise NotImplementedError

    def schema(self, where: bool = False):
        raise NotImplementedError

    def records(self, records: Iterable[Record], where: bool = True):
        """Results for records read by any reader; `where` adds their source and line."""
        raise NotImplementedError

    def table(self, table):
        """Results for an Arrow table: one row per input row, in the same order."""
        return self.records(table_records(table, self.extractor()), where=False)

    __call__ = table

    def close(self) -> None:
        pass

    def _table(self, columns: dict, where: bool):
        import pyarrow as pa

        schema = self.schema(where)
        return pa.table({name: pa.array(columns[name], type=schema.field(name).type) for name in schema.names}, schema)


def _where_fields(pa) -> list:
    return [("source", pa.string()), ("line", pa.int64())]


class CountCore(Core):
    """Token counts: id, [source, line], tokens, model, encoding, strategy, exact, error_band, error
    (the columns of `omnitok count -o x.parquet`, less `pos`)."""

    stage = "count"
    META = ("model", "encoding", "strategy", "exact", "error_band")

    def __init__(self, spec: Spec):
        super().__init__(spec)
        from .api import Counter

        self.counter = Counter(spec.model, options=spec.options)
        self.meta = self.counter.meta

    def extractor(self):
        from .records import Extractor

        fields = tuple(f for f in self.spec.fields or () if f) or None
        return Extractor(fields, self.counter.framing, self.spec.id_field)

    def schema(self, where: bool = False):
        import pyarrow as pa

        return pa.schema(
            [
                ("id", pa.string()),
                *(_where_fields(pa) if where else []),
                ("tokens", pa.int64()),
                ("model", pa.string()),
                ("encoding", pa.string()),
                ("strategy", pa.string()),
                ("exact", pa.bool_()),
                ("error_band", pa.float64()),
                ("error", pa.string()),
            ]
        )

    def counted(self, records: Iterable[Record]):
        """The local pipeline's own counting, in this process (pipeline.count_records)."""
        from .pipeline import count_records

        return count_records(records, self.counter.strategy, 1)

    def records(self, records: Iterable[Record], where: bool = True):
        cols: dict[str, list] = {name: [] for name in self.schema(where).names}
        planned = tuple(self.meta.get(k) for k in self.META)
        for c in self.counted(records):
            rec = c.record
            cols["id"].append(_str_id(rec.id))
            if where:
                cols["source"].append(rec.source)
                cols["line"].append(rec.line)
            cols["tokens"].append(c.tokens)
            cols["error"].append(rec.error)
            meta = planned if c.meta is None else tuple(c.meta.get(k) for k in self.META)
            for k, v in zip(self.META, meta, strict=True):
                cols[k].append(v)
        return self._table(cols, where)

    def close(self) -> None:
        self.counter.close()


_COMPRESS_FIELDS = (
    "original_tokens",
    "compressed_tokens",
    "compression_ratio",
    "quality_score",
    "compressed_text",
    "model_id",
    "is_exact_tokenization",
    "method",
    "budget",
    "kept_units",
    "total_units",
    "duplicates",
    "kept_passages",
)


class CompressCore(Core):
    """Compressed contexts: id, [source, line], CompressResult's fields, error."""

    stage = "compress"
    BUDGET = ("budget", "ratio", "target_compression")

    def __init__(self, spec: Spec):
        super().__init__(spec)
        from .compression import Compressor, check_budget

        self.budget = {k: spec.params.get(k) for k in self.BUDGET}
        check_budget(**self.budget)
        self.compressor = Compressor(spec.model, options=spec.options)
        self.meta = self.compressor.counter.meta

    def extractor(self):
        from .compression.stream import CompressExtractor

        context_field, query_field = (tuple(self.spec.fields or ()) + (None, None))[:2]
        return CompressExtractor(context_field, query_field, self.spec.params.get("query"), self.spec.id_field)

    def schema(self, where: bool = False):
        import pyarrow as pa

        types = {
            "compression_ratio": pa.float64(),
            "quality_score": pa.float64(),
            "compressed_text": pa.string(),
            "model_id": pa.string(),
            "is_exact_tokenization": pa.bool_(),
            "method": pa.string(),
            "kept_passages": pa.list_(pa.int64()),
        }
        return pa.schema(
            [
                ("id", pa.string()),
                *(_where_fields(pa) if where else []),
                *((name, types.get(name, pa.int64())) for name in _COMPRESS_FIELDS),
                ("error", pa.string()),
            ]
        )

    def records(self, records: Iterable[Record], where: bool = True):
        from .compression.stream import compress_stream

        cols: dict[str, list] = {name: [] for name in self.schema(where).names}
        for rec, row, err in compress_stream(records, self.compressor, **self.budget):
            cols["id"].append(_str_id(rec.id))
            if where:
                cols["source"].append(rec.source)
                cols["line"].append(rec.line)
            for name in _COMPRESS_FIELDS:
                cols[name].append(None if row is None else row[name])
            cols["error"].append(err)
        return self._table(cols, where)

    def close(self) -> None:
        self.compressor.close()


class ValidateCore(Core):
    """Scores of (original, compressed) pairs: id, [source, line], the metrics' scores, passed,
    failures (the gates a pair fails), error."""

    stage = "validate"
    SCORES = {
        "rouge-l": ("rouge_l_precision", "rouge_l_recall", "rouge_l_f1"),
        "compression": ("original_tokens", "compressed_tokens", "ratio"),
        "bertscore": ("bertscore_precision", "bertscore_recall", "bertscore_f1"),
    }

    def __init__(self, spec: Spec):
        super().__init__(spec)
        from .validation import Thresholds

        o = spec.options
        self.thresholds = Thresholds.of(o)
        self.metrics = o.scored
        self.stem = o.stem
        self.counter = None
        if "compression" in self.metrics:
            from .api import Counter

            self.counter = Counter(spec.model, options=o.count)
        self.meta = self.counter.meta if self.counter is not None else None
        if "bertscore" in self.metrics:
            from .validation.bertscore import scorer

            scorer(o.bertscore_model, False, o.rescale)  # load once, here

    def extractor(self):
        from .records import Extractor

        fields = tuple(self.spec.fields or ("original", "compressed"))
        if len(fields) != 2 or not all(fields):
            raise UsageError("validate needs two fields: the original's and the compressed text's")
        return Extractor(fields, None, self.spec.id_field)

    def schema(self, where: bool = False):
        import pyarrow as pa

        scores = [
            (n, pa.int64() if n.endswith("_tokens") else pa.float64()) for m in self.metrics for n in self.SCORES[m]
        ]
        return pa.schema(
            [
                ("id", pa.string()),
                *(_where_fields(pa) if where else []),
                *scores,
                ("passed", pa.bool_()),
                ("failures", pa.list_(pa.string())),
                ("error", pa.string()),
            ]
        )

    def records(self, records: Iterable[Record], where: bool = True):
        from .validation import add_bertscore, failures, score_pair

        recs = list(records)
        rows: list[dict | None] = []
        pairs, scored = [], []
        for rec in recs:
            if rec.error is not None:
                rows.append(None)
                continue
            orig, comp = rec.texts
            row = score_pair(orig, comp, self.metrics, self.counter, self.stem)
            rows.append(row)
            pairs.append((orig, comp))
            scored.append(row)
        if "bertscore" in self.metrics and scored:
            o = self.spec.options
            add_bertscore(scored, pairs, o.bertscore_model, False, o.rescale, "off")
        cols: dict[str, list] = {name: [] for name in self.schema(where).names}
        names = [n for m in self.metrics for n in self.SCORES[m]]
        for rec, row in zip(recs, rows, strict=True):
            cols["id"].append(_str_id(rec.id))
            if where:
                cols["source"].append(rec.source)
                cols["line"].append(rec.line)
            for n in names:
                value = None if row is None else row.get(n)
                cols[n].append(None if isinstance(value, float) and value != value else value)
            fails = failures(row, self.thresholds) if row is not None else []
            cols["passed"].append(None if row is None else not fails)
            cols["failures"].append(None if row is None else fails)
            cols["error"].append(rec.error)
        return self._table(cols, where)


def build(spec: Spec | dict, payloads: Sequence[bytes | None] | None = None) -> Core:
    """The core for a spec, after its bundles are installed on this host (once)."""
    if isinstance(spec, dict):
        spec = Spec.from_dict(spec)
    install_bundles(spec.bundles, payloads)
    return {"count": CountCore, "compress": CompressCore, "validate": ValidateCore}[spec.stage](spec)


# --- tokenizer bundles on a worker ----------------------------------------------------------------


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_uri(path: str) -> bytes:
    """A whole file from a local path or any URI a pyarrow filesystem reads (s3://, gs://, ...)."""
    fs, where = filesystem(path)
    with fs.open_input_stream(where) as f:
        return f.read()


def filesystem(path: str):
    """(pyarrow filesystem, path in it) for a local path or a URI."""
    import pyarrow.fs as pafs

    if "://" in path:
        return pafs.FileSystem.from_uri(path)
    return pafs.LocalFileSystem(), os.path.abspath(path)


def load_bundle(bundle: str | BundleAsset) -> tuple[BundleAsset, bytes]:
    """A bundle archive's bytes, read from a path or URI and checked: a bundle (its manifest reads)
    with the sha256 a BundleAsset pins. Raises AssetError."""
    import tempfile

    from .bundle.install import Limits, read_manifest
    from .bundle.sources import BundleError
    from .errors import AssetError

    path, pinned = (bundle.path, bundle.sha256) if isinstance(bundle, BundleAsset) else (str(bundle), None)
    try:
        data = read_uri(path)
    except (OSError, ValueError) as e:
        raise AssetError(f"{path}: cannot read the bundle ({e})", hint="`omnitok bundle create` makes one") from None
    digest = sha256_bytes(data)
    if pinned and pinned != digest:
        raise AssetError(f"{path}: sha256 {digest}, expected {pinned}")
    with tempfile.NamedTemporaryFile(suffix=".bundle") as tmp:
        tmp.write(data)
        tmp.flush()
        try:
            read_manifest(tmp.name, Limits())
        except BundleError as e:
            raise AssetError(str(e).replace(tmp.name, path)) from None
    return BundleAsset(path, digest), data


@contextlib.contextmanager
def _locked(path):
    import fcntl

    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def install_bundles(bundles: Sequence[BundleAsset], payloads: Sequence[bytes | None] | None = None) -> list[str]:
    """Install each bundle into this host's asset store once (a marker per sha256 under
    $OMNITOK_HOME/installed-bundles, taken under a file lock, so the workers of one host install it
    once between them). The archive comes from `payloads` (its bytes, shipped by the driver) or
    else is read from its path; either way it must have the sha256 the spec pins, and it is then
    installed by `omnitok.bundle.install`, which checks every file against the manifest. Returns
    the sha256 of the bundles installed by this call."""
    if not bundles:
        return []
    from .assets.store import omnitok_home
    from .bundle import install
    from .bundle.sources import BundleError

    home = omnitok_home()
    marks = home / "installed-bundles"
    marks.mkdir(parents=True, exist_ok=True)
    done = []
    for i, asset in enumerate(bundles):
        marker = marks / f"{asset.sha256}.json"
        if marker.is_file():
            continue
        with _locked(marks / ".lock"):
            if marker.is_file():
                continue
            data = payloads[i] if payloads is not None and i < len(payloads) else None
            if data is None:
                try:
                    data = read_uri(asset.path)
                except OSError as e:
                    raise BundleError(f"{asset.path}: the bundle cannot be read on this worker ({e})") from None
            actual = sha256_bytes(data)
            if actual != asset.sha256:
                raise BundleError(f"{asset.path}: sha256 {actual} on this worker, the spec pins {asset.sha256}")
            tmp = marks / f".{asset.sha256}.{os.getpid()}.bundle"
            try:
                tmp.write_bytes(data)
                result = install(str(tmp))
            finally:
                with contextlib.suppress(FileNotFoundError):
                    tmp.unlink()
            marker.write_text(json.dumps({"path": asset.path, "sha256": asset.sha256, "installed": result}))
            done.append(asset.sha256)
    return done


# --- files on any filesystem: shards in, part files and totals out ----------------------------------
# How a cluster runs `omnitok count` over files (omnitok.ray.count_paths): the driver lists the
# inputs and cuts them into shards (plan_shards), workers read each shard with the local reader's
# code (read_shard), count it with the core, write it (write_part) and send back its totals
# (shard_stats), which the driver merges into the run's Summary (merge_stats).

SHARD_BYTES = 32 << 20  # text per shard: large enough that a task's overhead is noise
MAX_LISTED = 1000  # error messages and offenders kept for the report; the totals count all

_JSONL = {".jsonl", ".ndjson", ".json"}


_PARQUET = {".parquet", ".pq"}


def _format_of(path: str, input_format: str) -> str | None:
    from .io.readers import detect_format

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
        fs, where = filesystem(p)
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


def plan_shards(files, fields: tuple[str, ...] | None, id_field: str | None, shard_bytes: int) -> list[dict]:
    """The shards of the inputs, in input order. Parquet: runs of row groups (footers read here,
    so each shard knows its first row); a file that cannot be read as Parquet, or lacks the text
    column, is one error shard, as it is one error record locally. JSONL: byte ranges (a shard
    owns the lines that start in it), or the whole file when gzipped."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from .records import Extractor

    extractor = Extractor(fields, None, id_field)
    shards: list[dict] = []
    for source, path, fmt, size in files:
        base = {"source": source, "path": path, "fmt": fmt}
        if fmt == "parquet":
            fs, where = filesystem(path)
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


def newlines(path: str, start: int, end: int) -> int:
    """Line ends in [start, end) of a file (the line numbers of the shards after it)."""
    fs, where = filesystem(path)
    n, pos = 0, start
    with fs.open_input_file(where) as f:
        while pos < end:
            block = f.read_at(min(16 << 20, end - pos), pos)
            if not block:
                break
            n += block.count(b"\n")
            pos += len(block)
    return n


def owned_lines(f, start: int, end: int, size: int) -> tuple[bytes, bool]:
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

    from .io.readers import InputStream

    source, path = shard["source"], shard["path"]
    if "error" in shard:
        yield Record(0, source, None, error=shard["error"])
        return
    reader = InputStream([path], extractor, shard["fmt"])
    fs, where = filesystem(path)
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
        data, at_start = owned_lines(f, shard["start"], shard["end"], f.size())
    offset = shard.get("lines_before", 0) + (0 if at_start else 1)
    for rec in reader.jsonl_lines(io.BytesIO(data), source, shard["start"] == 0):
        rec.line += offset
        yield rec


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


def merge_stats(stats: list[dict], planned: dict, max_tokens: int | None):
    from .summary import _META_KEYS, Summary

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


# The results directory follows the Hadoop/Spark committer's layout: workers write their parts
# under DIR/_temporary/<run>/, the driver moves them into DIR once every shard is done and then
# writes DIR/_SUCCESS. Readers (pyarrow, Spark, pandas) skip names that start with "_" or ".", so
# a run killed at any point before the commit leaves nothing a reader takes for the dataset.
TEMPORARY = "_temporary"
SUCCESS = "_SUCCESS"
_OWNER = "_owner.json"


def _part_name(index: int) -> str:
    return f"part-{index:05d}.parquet"


def _reason(e: OSError) -> str:
    """An OSError's cause in words (pyarrow's own messages repeat the path and the errno)."""
    return os.strerror(e.errno) if e.errno else str(e)


def _output_error(output: str, e: OSError):
    from .io.output import OutputError

    return OutputError(f"{output}: cannot write the results: {_reason(e)}")


def _alive(pid) -> bool:
    try:
        os.kill(int(pid), 0)
    except (ProcessLookupError, ValueError, TypeError, OverflowError):
        return False
    except PermissionError:
        return True  # someone else's process
    return True


def _sweep_stale(fs, base: str, output: str) -> None:
    """Remove DIR/_temporary left by runs that never committed, saying so once; refuse while the
    run that owns it is alive on this host (another run writing into DIR)."""
    import socket

    import pyarrow.fs as pafs

    tmp = f"{base}/{TEMPORARY}"
    parts = 0
    for run in fs.get_file_info(pafs.FileSelector(tmp)):
        if run.type != pafs.FileType.Directory:
            continue
        try:
            with fs.open_input_stream(f"{run.path}/{_OWNER}") as f:
                owner = json.loads(f.read())
        except (OSError, ValueError):
            owner = {}
        if isinstance(owner, dict) and owner.get("host") == socket.gethostname() and _alive(owner.get("pid")):
            raise UsageError(
                f"{output}: another run (pid {owner['pid']}) is writing into it; wait for it to end or give another directory"
            )
        files = fs.get_file_info(pafs.FileSelector(run.path))
        parts += sum(1 for f in files if f.base_name.startswith("part-"))
    fs.delete_dir(tmp)
    from . import notices

    notices.warn_once(
        f"stale-output:{output}",
        f"{output}: removed {TEMPORARY}/ left by an unfinished run ({parts} part files, never committed)",
    )


def prepare_output(output: str) -> str:
    """The results directory, made ready for a run; returns the run's own directory under
    DIR/_temporary, where the workers write. DIR is created if missing; a DIR that holds anything
    but a stale _temporary (a complete dataset, another run's files) is refused, naming what it
    holds, so that a rerun never mixes with nor silently replaces earlier results. A stale
    _temporary (a run killed before its commit) is removed, with one warning. A DIR that cannot
    be written is an OutputError (exit 1)."""
    import socket
    import uuid

    import pyarrow.fs as pafs

    fs, base = filesystem(output)
    try:
        info = fs.get_file_info(base)
        if info.type == pafs.FileType.File:
            raise UsageError(f"{output}: is a file; --ray writes a directory of Parquet files")
        if info.type == pafs.FileType.Directory:
            entries = fs.get_file_info(pafs.FileSelector(base))
            names = sorted(e.base_name for e in entries)
            if SUCCESS in names:
                parts = sum(1 for n in names if n.startswith("part-"))
                raise UsageError(
                    f"{output}: the directory is not empty: it holds a complete dataset ({SUCCESS}, {parts} part "
                    "files); give a new or empty directory, or remove it first"
                )
            if [n for n in names if n != TEMPORARY]:
                shown = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
                raise UsageError(f"{output}: the directory is not empty ({shown}); give a new or empty one")
            if names:
                _sweep_stale(fs, base, output)
        run = f"{base}/{TEMPORARY}/run-{uuid.uuid4().hex[:12]}"
        fs.create_dir(run, recursive=True)
        with fs.open_output_stream(f"{run}/{_OWNER}") as f:
            f.write(json.dumps({"host": socket.gethostname(), "pid": os.getpid()}).encode())
    except OSError as e:
        raise _output_error(output, e) from None
    return run


def commit_parts(output: str, run: str, count: int) -> None:
    """Publish a finished run: each of its `count` parts moved from `run` into DIR, the run's
    _temporary removed, then DIR/_SUCCESS (empty) written. A part missing is an error (nothing
    moved)."""
    import pyarrow.fs as pafs

    from .errors import OmnitokError

    fs, base = filesystem(output)
    try:
        have = {f.base_name for f in fs.get_file_info(pafs.FileSelector(run)) if f.type == pafs.FileType.File}
        missing = [i for i in range(count) if _part_name(i) not in have]
        if missing:
            raise OmnitokError(f"{output}: the parts of shards {missing[:10]} were not written; nothing was committed")
        for i in range(count):
            fs.move(f"{run}/{_part_name(i)}", f"{base}/{_part_name(i)}")
        fs.delete_dir(f"{base}/{TEMPORARY}")
        with fs.open_output_stream(f"{base}/{SUCCESS}"):
            pass
    except OSError as e:
        raise _output_error(output, e) from None


def discard_run(output: str, run: str) -> None:
    """Drop a run that failed: its directory, and DIR/_temporary when no other run is left there."""
    import pyarrow.fs as pafs

    fs, base = filesystem(output)
    with contextlib.suppress(OSError):
        fs.delete_dir(run)
        if not fs.get_file_info(pafs.FileSelector(f"{base}/{TEMPORARY}")):
            fs.delete_dir(f"{base}/{TEMPORARY}")


def write_part(table, run: str, index: int) -> None:
    """Results as RUN/part-<index>.parquet (RUN: the run's directory under DIR/_temporary, as
    prepare_output gave it; a retried shard overwrites its own part): on a local disk under a
    hidden name first, then renamed, so that a worker killed while writing leaves no half part
    for the commit to publish."""
    import uuid

    import pyarrow.fs as pafs
    import pyarrow.parquet as pq

    fs, base = filesystem(run)
    final = f"{base}/{_part_name(index)}"
    if isinstance(fs, pafs.LocalFileSystem):
        tmp = f"{base}/.part-{index:05d}.{uuid.uuid4().hex[:8]}.tmp"
        try:
            pq.write_table(table, tmp, filesystem=fs)
            fs.move(tmp, final)
        except BaseException:
            with contextlib.suppress(OSError):
                fs.delete_file(tmp)
            raise
    else:  # an object store: an object appears whole when its upload completes
        pq.write_table(table, final, filesystem=fs)


def ranges_to_count(shards: list[dict]) -> list[int]:
    """The JSONL byte-range shards whose line ends the shards after them need (all but the last of
    each file): count each with `newlines` and give the counts to `number_lines`."""
    out = []
    for i, s in enumerate(shards):
        nxt = shards[i + 1] if i + 1 < len(shards) else None
        if "start" in s and not s.get("gz") and nxt is not None and nxt["path"] == s["path"] and "start" in nxt:
            out.append(i)
    return out


def number_lines(shards: list[dict], counts: dict[int, int]) -> None:
    """Give every JSONL byte-range shard `lines_before`: the line ends in its file before it."""
    before = 0
    for i, s in enumerate(shards):
        if "start" not in s or s.get("gz"):
            continue
        if s["start"] == 0:
            before = 0
        s["lines_before"] = before
        before += counts.get(i, 0)
