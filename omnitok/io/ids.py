"""Record ids on their way out: each output writes an id with the value and type it was read with.

JSON: orjson reads an integer past 64 bits (above 2**64 - 1 or below -2**63) as a float, so such an
id would come out rounded, or (being no integer) not at all. The JSONL reader notices the one float
that can be such an integer and reads that line again with the standard library, whose integers
have no bound (`lost_integer`, `exact_id`); every other line costs nothing more. An integer of
309 digits or more is past even a float: orjson refuses the line, and `reread` reads it with the
standard library instead. orjson cannot write those integers either: `json_id` and `dumps` write
them as their decimal digits.

Parquet output: the `id` column's Arrow type is fixed when the writer opens, before any row is seen,
so it is decided from what the inputs declare (`id_type`): where every input is a Parquet file
(named, not a stream) and the id column has the same integer or string type in each that has it,
the output's id column has that type (int64 stays int64, uint64 stays uint64); otherwise (JSONL,
text, stdin, mixed inputs, types that differ, ids of another type) it is a string column, with an
integer id as its exact decimal text. `id_column` builds the column by that rule, for every writer
of Arrow data (the Parquet sink, Ray's workers).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

INT64_MIN = -(1 << 63)
UINT64_MAX = (1 << 64) - 1
_FLOAT_MIN = float(INT64_MIN)  # -2**63 - 1 and below round to this or lower
_FLOAT_MAX = float(1 << 64)  # 2**64 and above round to this or higher


def lost_integer(value: Any) -> bool:
    """Whether `value` may be a float that orjson made of an integer it could not hold (every such
    integer is at least 2**64 or below -2**63, and rounds to a float at or past those bounds)."""
    return type(value) is float and (value >= _FLOAT_MAX or value <= _FLOAT_MIN)


def exact_id(extractor, obj: Any, line: bytes) -> Any:
    """A JSONL record's id, read again from its line when orjson turned it into a float: the exact
    integer (or None, as before, where the line's id really is a float). Cheap where there is
    nothing to recover: one dict look-up for a record whose id is absent."""
    id_field = getattr(extractor, "id_field", None)
    if id_field is None or type(obj) is not dict:
        return None
    value = obj.get(id_field)
    if value is None and "." in id_field:
        from ..records import _MISSING, get_path

        value = get_path(obj, id_field)
        if value is _MISSING:
            return None
    if not lost_integer(value):
        return None
    try:
        return extractor.record_id(json.loads(line))
    except (ValueError, RecursionError):  # a number past Python's digit limit; nesting too deep
        return None


def reread(data: bytes | str, error: ValueError) -> tuple[bool, Any]:
    """(True, the value) of JSON text that orjson refused with `error` only because a number in
    it is too large for a float (an integer of 309 digits or more, `1e400`), read again by the
    standard library under orjson's other rules: integers exact (up to Python's 4,300 digits), no
    NaN or Infinity literals, no lone surrogates; (False, None) where orjson's error stands. Only
    lines orjson refused come here: the others cost nothing more."""
    if "infinity" not in str(getattr(error, "msg", "")):
        return False, None
    try:
        value = json.loads(data, parse_constant=no_constant)
    except (ValueError, RecursionError):
        return False, None
    from ..records import lone_surrogate

    return (False, None) if lone_surrogate(value) else (True, value)


def read_keeping_surrogates(data: bytes | str) -> tuple[bool, Any]:
    """(True, the value) where the standard library reads `data` as JSON under orjson's other
    rules (no NaN or Infinity literals), its lone surrogate escapes kept, else (False, None):
    for telling what an input is after orjson refused it. JSON whose only fault is a number too
    large for orjson, or such an escape (then its record's error, not the input's: README, Input
    rules), is JSON."""
    try:
        return True, json.loads(data, parse_constant=no_constant)
    except (ValueError, RecursionError):
        return False, None


class NotAJSONValue(ValueError):
    """NaN, Infinity or -Infinity: literals the standard library reads as numbers, which JSON
    has not (orjson refuses them, and so does every reader here)."""

    def __init__(self, name: str):
        super().__init__(f"{name} is not a JSON value")
        self.name = name


def no_constant(name: str):
    """json.loads' parse_constant: NotAJSONValue for each of those literals."""
    raise NotAJSONValue(name)


def _wide(value: Any) -> bool:
    return type(value) is int and not INT64_MIN <= value <= UINT64_MAX


def json_id(value: Any, dumps) -> bytes:
    """An id as JSON text (`dumps`: orjson.dumps): integers of any size exactly."""
    return b"%d" % value if type(value) is int else dumps(value)


def json_ready(row: dict) -> dict:
    """`row` with an id past 64 bits made writable by orjson (as its digits); in place."""
    rid = row.get("id")
    if _wide(rid):
        import orjson

        row["id"] = orjson.Fragment(b"%d" % rid)
    return row


def dumps(obj: Any, option: int | None = None) -> bytes:
    """orjson.dumps, where integers past 64 bits (which orjson refuses) are written exactly: for
    rows that carry ids (compress and validate output). The common row costs one orjson call."""
    import orjson

    try:
        return orjson.dumps(obj, option=option)
    except TypeError:
        return orjson.dumps(_fragments(obj), option=option)


def _fragments(obj: Any) -> Any:
    if _wide(obj):
        import orjson

        return orjson.Fragment(b"%d" % obj)
    if isinstance(obj, dict):
        return {k: _fragments(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_fragments(v) for v in obj]
    return obj


# --- Arrow ----------------------------------------------------------------------------------------


def _kept(t) -> bool:
    """An Arrow type whose values the readers take as ids (record_id: integers and strings)."""
    import pyarrow as pa

    return pa.types.is_integer(t) or pa.types.is_string(t) or pa.types.is_large_string(t)


def column_type(schema, id_field: str | None):
    """The Arrow type of the id column (a dotted path looks into structs) in `schema`, or None."""
    import pyarrow as pa

    if id_field is None:
        return None
    if id_field in schema.names:
        t = schema.field(id_field).type
    else:
        t = None
        fields = schema
        for part in id_field.split("."):
            index = fields.get_field_index(part) if fields is not None else -1
            if index < 0:
                return None
            t = fields.field(index).type
            fields = t if pa.types.is_struct(t) else None
    if pa.types.is_dictionary(t):
        t = t.value_type
    return t


def id_type(paths: Sequence[str], id_field: str | None, formats: Sequence[str]):
    """The output's id column type for inputs `paths` read as `formats` (jsonl, parquet, text; one
    a path): the type the Parquet inputs all give their id column (integer or string types), else
    string (the module's rule). Reads only the Parquet footers; an unreadable footer is string."""
    import pyarrow as pa

    string = pa.string()
    if not paths or id_field is None or any(fmt != "parquet" for fmt in formats):
        return string
    import pyarrow.parquet as pq

    from .inputs import is_stream

    found = set()
    for path in paths:
        if is_stream(path):
            return string
        try:
            schema = pq.read_schema(path)
        except (pa.ArrowException, OSError, EOFError):
            return string
        t = column_type(schema, id_field)
        if t is not None:
            found.add(t)
    if len(found) != 1:
        return string
    (t,) = found
    return t if _kept(t) else string


def id_column(ids: Iterable[Any], type_=None):
    """The id column of Arrow output: ids (str, int or None, as readers give them) as `type_`
    (id_type's answer; string when None). In a string column an integer is its exact decimal text."""
    import pyarrow as pa

    if type_ is None or pa.types.is_string(type_) or pa.types.is_large_string(type_):
        return pa.array([None if v is None else v if type(v) is str else str(v) for v in ids], type_ or pa.string())
    return pa.array(list(ids), type_)
