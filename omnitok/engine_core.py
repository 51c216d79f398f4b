"""The engine-neutral core: a batch of records in, an Arrow table of results out.

Front ends that run omnitok somewhere else than this process (Ray workers, today) build the core
once per worker from a plain `Spec` (a model id, options, field names, and the tokenizer bundles
with their sha256), never from a pickled tokenizer, and call it on each batch:

    core = build(Spec("count", model="gpt-4o", fields=("text",)))
    results = core.table(arrow_table)        # one result row per input row, in order

The stages are the library's own: counting runs through the run driver (`run.count`, the code
every front end runs: `pipeline.count_records` with the `api.Counter`'s strategy, bad records as
error rows), records are extracted by `records.Extractor` (or compress's extractor), compress
goes through `compression.Compressor` and validate through `validation.score_pair`. There is no
second implementation here, only the conversions between Arrow and records, so a worker's numbers
are the local pipeline's.

`build` installs the spec's tokenizer bundles first (omnitok.bundle.shipping). Over files, the
inputs are cut into shards and read by omnitok.io.shards, counted here, written as part files by
omnitok.io.parts and summed here (`shard_stats`, `merge_stats`): the engine-neutral half of
`omnitok count --ray`, which omnitok.ray schedules.
"""

from __future__ import annotations

import json
from collections import Counter as Tally
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from .bundle.shipping import BundleAsset, install_bundles
from .errors import UsageError
from .records import ExtractError, Record
from .summary import MAX_LISTED  # error messages and offenders a report keeps; the totals count all

STAGES = ("count", "compress", "validate")


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
    min_bertscore, min_bleu, min_chrf, bertscore_model, rescale).
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
        min_bleu=p.get("min_bleu"),
        min_chrf=p.get("min_chrf"),
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
    """Token counts: id, [source, line], tokens, model, encoding, strategy, engine, exact,
    error_band, error (the columns of `omnitok count -o x.parquet`, less `pos`). Records run
    through the run driver (`run.count`) with every bad record an error row (on a cluster a run
    cannot stop at one); `outcome`: the last call's run.Outcome."""

    stage = "count"
    META = ("model", "encoding", "strategy", "engine", "exact", "error_band")
    outcome = None

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

        types = {"exact": pa.bool_(), "error_band": pa.float64()}
        return pa.schema(
            [
                ("id", pa.string()),
                *(_where_fields(pa) if where else []),
                ("tokens", pa.int64()),
                *((k, types.get(k, pa.string())) for k in self.META),
                ("error", pa.string()),
            ]
        )

    def records(self, records: Iterable[Record], where: bool = True):
        from . import run

        sink = ArrowRows(self.schema(where).names, self.meta, self.META, where)
        self.outcome = run.count(records, self.counter, run.ErrorPolicy("record"), _Tally(), sink)
        return self._table(sink.cols, where)

    def close(self) -> None:
        self.counter.close()


class _Tally:
    """run.count's `stats` for a core: how many were counted, no more. The totals a shard reports
    (histogram, errors, offenders) are taken from its result table at once (`shard_stats`), which
    is cheaper than a Summary's per-record bookkeeping on the per-shard path."""

    counted = over_limit = 0

    def add(self, tokens, record=None, meta=None) -> None:
        self.counted += 1

    def add_error(self, message: str) -> None:
        pass


class ArrowRows:
    """The run driver's sink for a core (run.count's `sink`): result and error rows as columns
    (`cols`, by the schema's names), the row's own meta where it was not counted as planned."""

    carries_errors = True

    def __init__(self, names: Sequence[str], planned: dict, keys: Sequence[str], where: bool):
        self.cols: dict[str, list] = {name: [] for name in names}
        self.keys = tuple(keys)
        self.planned = tuple(planned.get(k) for k in self.keys)
        self.where = where
        self._add = [self.cols[k].append for k in ("id", "tokens", "error")]
        self._add_where = [self.cols[k].append for k in ("source", "line")] if where else None
        self._add_meta = [self.cols[k].append for k in self.keys]

    def result(self, c) -> None:
        rec = c.record
        add_id, add_tokens, add_error = self._add
        add_id(None if rec.id is None else str(rec.id))  # as the local Parquet output writes ids
        add_tokens(c.tokens)
        add_error(rec.error)
        if self._add_where is not None:
            self._add_where[0](rec.source)
            self._add_where[1](rec.line)
        meta = self.planned if c.meta is None else tuple(c.meta.get(k) for k in self.keys)
        for add, v in zip(self._add_meta, meta, strict=True):
            add(v)

    error = result  # an error record's row: no tokens, its error

    def results(self, run) -> None:
        for c in run.counted():
            self.result(c)

    def close(self) -> None:
        pass


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

    def __init__(self, spec: Spec):
        super().__init__(spec)
        from .validation import FIELDS, Thresholds

        self.SCORES = FIELDS  # each metric's score columns, as the library names them

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
    install_bundles(spec.bundles, payloads)  # omnitok.bundle.shipping
    return {"count": CountCore, "compress": CompressCore, "validate": ValidateCore}[spec.stage](spec)


# --- a count core's shard totals: what a worker sends back, what the driver sums ------------------


def shard_stats(table, index: int, max_tokens: int | None) -> dict:
    """A shard's totals from its result table: records, errors, tokens, a histogram of counts (for
    exact percentiles), the first errors and offenders, and how rows were counted."""
    import pyarrow.compute as pc

    from .summary import _META_KEYS

    ok = table.filter(pc.is_null(table["error"]))
    bad = table.filter(pc.is_valid(table["error"]))
    hist = pc.value_counts(ok["tokens"]).to_pylist() if ok.num_rows else []
    how = Tally()
    if ok.num_rows:
        keys = list(_META_KEYS)  # as merge_stats and the Summary key them
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
