"""Sinks: results -> stdout or a file, in one of the output formats.

Every sink takes results in input order. A result row holds the record's position (and id,
source and line where they help), `tokens`, and the run's `model`, `encoding`, `strategy`,
`engine`, `exact`; an error row holds `error` and the offending `record`.
"""

from __future__ import annotations

import csv
import io
from typing import IO, Any

from ..errors import UsageError, printable
from ..records import Counted, CountedRun
from .ids import id_column, json_id, json_ready

OUTPUT_FORMATS = ("auto", "number", "jsonl", "json", "csv", "parquet", "table")
# How a row was counted (strategy_chain.meta_of's fields), in the rows' order.
META = ("model", "encoding", "strategy", "engine", "exact", "error_band")
COLUMNS = ["pos", "id", "source", "line", "tokens", *META, "error"]
_SUFFIX_FORMATS = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "json",
    ".csv": "csv",
    ".parquet": "parquet",
}


def suffix_format(output: str | None) -> str | None:
    """The format `output`'s suffix names (x.parquet: parquet), or None."""
    if output and output != "-":
        for suffix, name in _SUFFIX_FORMATS.items():
            if output.lower().endswith(suffix):
                return name
    return None


def check_format_suffix(fmt: str, output: str | None) -> None:
    """Refuse a --format that contradicts -o's suffix (`--format json -o x.parquet`)."""
    named = suffix_format(output)
    if fmt != "auto" and named is not None and fmt != named:
        raise UsageError(
            f"--format {fmt} contradicts -o {output}, whose suffix says {named}; drop --format or rename the file"
        )


def format_for_output(fmt: str, output: str | None, single_text: bool) -> str:
    check_format_suffix(fmt, output)
    if fmt != "auto":
        return fmt
    return suffix_format(output) or ("number" if single_text else "jsonl")


class Sink:
    carries_errors = True  # an error row holds the reason

    def __init__(self, out: IO[bytes], meta: dict, with_source: bool):
        self.out = out
        self.meta = meta
        self.with_source = with_source

    def row(self, c: Counted) -> dict:
        rec = c.record
        row: dict[str, Any] = {"pos": rec.pos}
        if rec.id is not None:
            row["id"] = rec.id
        if self.with_source:
            row["source"] = rec.source
            row["line"] = rec.line
        row["tokens"] = c.tokens
        if c.parts is not None:
            row["fields"] = dict(zip(rec.fields or [], c.parts, strict=True))
        row.update(c.meta or self.meta)
        return row

    def error_row(self, c: Counted) -> dict:
        rec = c.record
        row: dict[str, Any] = {"pos": rec.pos}
        if rec.id is not None:
            row["id"] = rec.id
        row.update({"source": rec.source, "line": rec.line, "error": rec.error, "record": rec.raw})
        return row

    def result(self, c: Counted) -> None:
        raise NotImplementedError

    def results(self, run: CountedRun) -> None:
        """A run of plain results (the pipeline's CountedRun): the same bytes as result() on each."""
        for c in run.counted():
            self.result(c)

    def error(self, c: Counted) -> None:
        raise NotImplementedError

    def close(self) -> None:
        self.out.flush()


class JsonlSink(Sink):
    def __init__(self, out, meta, with_source):
        super().__init__(out, meta, with_source)
        import orjson

        self._dumps = orjson.dumps
        # The run's fields, serialised once: a row is then a few byte joins (the same bytes
        # orjson.dumps(self.row(c)) gives, which rows with their own meta or fields still use).
        self._tail = b"," + orjson.dumps(meta)[1:] + b"\n" if meta else None

    def row(self, c: Counted) -> dict:
        return json_ready(super().row(c))  # an id past 64 bits written as its digits

    def error_row(self, c: Counted) -> dict:
        return json_ready(super().error_row(c))

    def result(self, c: Counted) -> None:
        if c.meta is not None or c.parts is not None or self._tail is None:
            self.out.write(self._dumps(self.row(c)) + b"\n")
            return
        rec = c.record
        dumps = self._dumps
        head = b'{"pos":%d' % rec.pos
        if rec.id is not None:
            head += b',"id":' + json_id(rec.id, dumps)
        if self.with_source:
            head += b',"source":' + dumps(rec.source) + b',"line":' + dumps(rec.line)
        self.out.write(head + b',"tokens":%d' % c.tokens + self._tail)

    def results(self, run: CountedRun) -> None:
        if self._tail is None or type(self).result is not JsonlSink.result:  # a subclass writes its own rows
            super().results(run)
            return
        dumps, tail = self._dumps, self._tail
        # What follows "pos" in each row, up to "tokens": the id, then source and line if shown.
        heads = [  # (json_id, inlined: an integer of any size as its digits)
            b"" if rid is None else b',"id":' + (b"%d" % rid if type(rid) is int else dumps(rid)) for rid in run.ids
        ]
        if self.with_source:
            where = b',"source":' + dumps(run.source) + b',"line":'
            heads = [b"%s%s%d" % (head, where, line) for head, line in zip(heads, run.lines, strict=True)]
        first = run.first_pos
        rows = [
            b'{"pos":%d%s,"tokens":%d%s' % (first + i, head, tokens, tail)
            for i, (head, tokens) in enumerate(zip(heads, run.tokens, strict=True))
        ]
        self.out.write(b"".join(rows))

    def error(self, c: Counted) -> None:
        self.out.write(self._dumps(self.error_row(c), default=str) + b"\n")


class AddFieldSink(JsonlSink):
    """Each input record written back with its count added under `name`."""

    def __init__(self, out, meta, with_source, name: str):
        super().__init__(out, meta, with_source)
        self.name = name

    def result(self, c: Counted) -> None:
        raw, text = c.record.raw, c.record.raw_json
        if text is not None and isinstance(raw, dict):
            self.out.write(self._added(text, raw, c.tokens) + b"\n")
            return
        obj = dict(raw) if isinstance(raw, dict) else {"text": raw}
        obj[self.name] = c.tokens
        self.out.write(self._dumps(obj, default=str) + b"\n")

    def _added(self, text: bytes, obj: dict, tokens: int) -> bytes:
        """The record's own JSON text with the count added: every input field comes back
        byte-for-byte (orjson would turn an integer past 64 bits into a float)."""
        body = text.strip()
        if self.name not in obj and body.endswith(b"}"):
            head = body[:-1].rstrip()
            return head + (b"," if obj else b"") + self._dumps(self.name) + b":%d}" % tokens
        # The field is there already (a count from an earlier run): replace its value; numbers are
        # carried over as written.
        import json

        import orjson

        def as_written(literal: str):
            return orjson.Fragment(literal)

        exact = json.loads(body, parse_int=as_written, parse_float=as_written, parse_constant=as_written)
        exact[self.name] = tokens
        return self._dumps(exact)


class NumberSink(Sink):
    """A bare number a record; an error record leaves an empty line, so lines stay aligned."""

    carries_errors = False  # the reason goes to stderr as well

    def result(self, c: Counted) -> None:
        self.out.write(b"%d\n" % c.tokens)

    def results(self, run: CountedRun) -> None:
        self.out.write(b"".join([b"%d\n" % t for t in run.tokens]))

    def error(self, c: Counted) -> None:
        self.out.write(b"\n")


class JsonSink(JsonlSink):
    """One JSON document: an object for a single result, an array for several."""

    def __init__(self, out, meta, with_source):
        super().__init__(out, meta, with_source)
        self._first: bytes | None = None
        self._array = False

    def _emit(self, data: bytes) -> None:
        if self._first is None and not self._array:
            self._first = data
            return
        if not self._array:
            self.out.write(b"[\n" + self._first)
            self._array = True
            self._first = None
        self.out.write(b",\n" + data)

    def result(self, c: Counted) -> None:
        self._emit(self._dumps(self.row(c)))

    def error(self, c: Counted) -> None:
        self._emit(self._dumps(self.error_row(c), default=str))

    def close(self) -> None:
        if self._array:
            self.out.write(b"\n]\n")
        elif self._first is not None:
            self.out.write(self._first + b"\n")
        super().close()


def _csv_bool(value):
    """A boolean as JSONL writes it (`true`/`false`), not as Python prints it (`True`)."""
    if value is True:
        return "true"
    if value is False:
        return "false"
    return value


class CsvSink(Sink):
    """Rows with the COLUMNS header; booleans written `true`/`false`, as in JSONL."""

    def __init__(self, out, meta, with_source):
        super().__init__(out, meta, with_source)
        self._text = io.TextIOWrapper(out, encoding="utf-8", newline="", write_through=True)
        self._csv = csv.writer(self._text)
        self._csv.writerow(COLUMNS)

    def _flat(self, c: Counted, error: str | None) -> list:
        rec = c.record
        m = c.meta or self.meta
        fixed = [_csv_bool(m.get(k)) for k in META]
        return [rec.pos, _csv_bool(rec.id), rec.source, rec.line, c.tokens, *fixed, error]

    def result(self, c: Counted) -> None:
        self._csv.writerow(self._flat(c, None))

    def error(self, c: Counted) -> None:
        self._csv.writerow(self._flat(c, c.record.error))

    def close(self) -> None:
        self._text.flush()
        self._text.detach()
        super().close()


class ParquetSink(Sink):
    """Rows with the COLUMNS; the id column has `id_type` (io.ids.id_type: the Parquet inputs' own
    id type where they all agree, else string, an integer id as its exact digits)."""

    _ROWS = 65536

    def __init__(self, out, meta, with_source, id_type=None):
        super().__init__(out, meta, with_source)
        import pyarrow as pa
        import pyarrow.parquet as pq

        self._pa = pa
        self._id_type = id_type or pa.string()
        self._schema = pa.schema(
            [
                ("pos", pa.int64()),
                ("id", self._id_type),
                ("source", pa.string()),
                ("line", pa.int64()),
                ("tokens", pa.int64()),
                ("model", pa.string()),
                ("encoding", pa.string()),
                ("strategy", pa.string()),
                ("engine", pa.string()),
                ("exact", pa.bool_()),
                ("error_band", pa.float64()),
                ("error", pa.string()),
            ]
        )
        self._writer = pq.ParquetWriter(out, self._schema)
        self._rows: list[dict] = []

    def _add(self, c: Counted, error: str | None) -> None:
        rec = c.record
        row = {"pos": rec.pos, "id": rec.id, "source": rec.source}
        m = c.meta or self.meta
        row.update({"line": rec.line, "tokens": c.tokens, "error": error})
        row.update({k: m.get(k) for k in META})
        self._rows.append(row)
        if len(self._rows) >= self._ROWS:
            self._flush()

    def _flush(self) -> None:
        if self._rows:
            rows, self._rows = self._rows, []
            ids = id_column([row.pop("id") for row in rows], self._id_type)
            rest = self._pa.Table.from_pylist(rows, schema=self._schema.remove(1))
            self._writer.write_table(rest.add_column(1, self._schema.field(1), ids))

    def result(self, c: Counted) -> None:
        self._add(c, None)

    def error(self, c: Counted) -> None:
        self._add(c, c.record.error)

    def close(self) -> None:
        self._flush()
        self._writer.close()
        super().close()


def title_of(meta: dict) -> str:
    """How a table names the way its rows were counted: `gpt-4o (o200k_base, tiktoken, engine
    gigatoken, exact=True)`."""
    return (
        f"{meta['model']} ({meta['encoding']}, {meta['strategy']}, engine {meta.get('engine')}, exact={meta['exact']})"
    )


class TableSink(Sink):
    """An aligned text table for people, streamed: column widths are set by the first block of
    rows (a wider cell later just pushes its row out), so memory and time stay flat however many
    rows there are. It is text for a terminal: every cell and the title are escaped (printable),
    so an id holding ESC, CR or a bidi override shows as `\\x1b`, `\\r`, `\\u202e` and keeps its row on
    one line."""

    BLOCK = 1000
    _COLUMNS = (("pos", ">"), ("id", "<"), ("where", "<"), ("tokens", ">"), ("error", "<"))

    def __init__(self, out, meta, with_source):
        super().__init__(out, meta, with_source)
        self._rows: list[tuple[str, ...]] = []
        self._widths: list[int] | None = None

    def _add(self, cells: tuple) -> None:
        self._rows.append(tuple("" if c is None else printable(str(c)) for c in cells))
        if len(self._rows) >= self.BLOCK:
            self._flush()

    def result(self, c: Counted) -> None:
        rec = c.record
        self._add((rec.pos, rec.id, rec.where, c.tokens, None))

    def error(self, c: Counted) -> None:
        rec = c.record
        self._add((rec.pos, rec.id, rec.where, None, rec.error))

    def _line(self, cells) -> bytes:
        parts = [
            f"{cell:{align}{width}}" for cell, (_, align), width in zip(cells, self._COLUMNS, self._widths, strict=True)
        ]
        return ("  ".join(parts).rstrip() + "\n").encode()

    def _flush(self) -> None:
        if self._widths is None:
            m = self.meta
            title = printable(title_of(m))
            names = [name for name, _ in self._COLUMNS]
            least = {"pos": 6, "tokens": 6}  # room for a million rows before a later row is pushed out
            self._widths = [
                max([len(name), least.get(name, 0)] + [len(r[k]) for r in self._rows]) for k, name in enumerate(names)
            ]
            self._widths[-1] = 0  # the last column is not padded
            rule = "  ".join("-" * w for w in self._widths[:-1]) + "  -----"
            self.out.write(title.encode() + b"\n" + self._line(names) + rule.encode() + b"\n")
        self.out.write(b"".join(self._line(r) for r in self._rows))
        self._rows = []

    def close(self) -> None:
        if self._rows or self._widths is None:
            self._flush()
        super().close()


def _is_tty(out: IO[bytes]) -> bool:
    try:
        return out.isatty()
    except (OSError, ValueError, AttributeError):
        return False


def make_sink(fmt: str, out: IO[bytes], meta: dict, with_source: bool, add_field: str | None, id_type=None) -> Sink:
    """The sink for `fmt`; `id_type`: the Arrow type of Parquet output's id column (the inputs'
    InputStream.id_type(); string when None)."""
    if add_field:
        if fmt not in ("jsonl", "auto", "number"):
            raise UsageError("--add-field writes JSONL records; use it without --format or with --format jsonl")
        return AddFieldSink(out, meta, with_source, add_field)
    sinks = {
        "number": NumberSink,
        "jsonl": JsonlSink,
        "json": JsonSink,
        "csv": CsvSink,
        "parquet": ParquetSink,
        "table": TableSink,
    }
    if fmt not in sinks:
        raise UsageError(f"unknown output format {fmt!r}; one of {', '.join(OUTPUT_FORMATS)}")
    if fmt == "parquet" and _is_tty(out):
        raise UsageError("--format parquet writes binary data; give -o FILE.parquet")
    if fmt == "parquet":
        return ParquetSink(out, meta, with_source, id_type)
    return sinks[fmt](out, meta, with_source)
