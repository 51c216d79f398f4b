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
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from .errors import UsageError
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

    options: the stage's library options (Counter's encoding, engine, tokenizer, special_tokens,
    online, strict, cache; Compressor's method, gap_marker, dedup, ...).
    fields: count: the text fields (None: auto); validate: (original, compressed);
    compress: (context field or None, query field or None).
    params: the stage's per-call parameters (compress: budget / ratio / target_compression /
    query; validate: metrics, stem, min_rouge_l, max_ratio, min_bertscore, bertscore_model).
    """

    stage: str = "count"
    model: str | None = None
    options: dict = field(default_factory=dict)
    fields: tuple[str | None, ...] | None = None
    id_field: str | None = "id"
    params: dict = field(default_factory=dict)
    bundles: tuple[BundleAsset, ...] = ()

    def __post_init__(self):
        if self.stage not in STAGES:
            raise UsageError(f"stage must be one of {', '.join(STAGES)}, not {self.stage!r}")
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
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Spec:
        return cls(**data)


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
        rec = Record(i, source, None if first_line is None else first_line + i, ex.record_id(obj))
        try:
            rec.texts, rec.overhead, rec.fields = ex.extract(obj)
        except ExtractError as e:
            rec.error = str(e)
            rec.raw = obj
        yield rec


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

        options = {"cache": "off", **spec.options}
        self.counter = Counter(spec.model, **options)
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
        options = {"method": "bm25", "cache": "off", **spec.options}
        self.compressor = Compressor(spec.model, **options)
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
        from .validation import METRICS, Thresholds, with_gated

        p = spec.params
        self.thresholds = Thresholds(p.get("min_rouge_l"), p.get("max_ratio"), p.get("min_bertscore"))
        metrics = tuple(p.get("metrics") or ("rouge-l",))
        for m in metrics:
            if m not in METRICS:
                raise UsageError(f"unknown metric {m!r}; available: {', '.join(METRICS)}")
        self.metrics = with_gated(metrics, self.thresholds)
        self.stem = bool(p.get("stem", False))
        self.counter = None
        if "compression" in self.metrics:
            from .api import Counter

            self.counter = Counter(spec.model, **{"cache": "off", **spec.options})
        self.meta = self.counter.meta if self.counter is not None else None
        if "bertscore" in self.metrics:
            from .validation.bertscore import scorer

            scorer(p.get("bertscore_model"), False, bool(p.get("rescale", False)))  # load once, here

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
            p = self.spec.params
            add_bertscore(scored, pairs, p.get("bertscore_model"), False, bool(p.get("rescale", False)), "off")
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
