"""Records and text extraction: what in each input record is counted.

A record becomes a list of texts plus a fixed overhead (chat framing), so every stage can batch
the texts of many records into one engine call and add the overhead back afterwards.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from .errors import ExtractError, shown  # noqa: F401 - ExtractError: where records' users have always found it


@dataclass(slots=True)
class Record:
    pos: int  # 0-based position across all inputs, in input order
    source: str  # file name, or <stdin>
    line: int | None  # 1-based line (JSONL, text --lines) or row (Parquet)
    id: Any = None
    texts: list[str] = field(default_factory=list)
    overhead: int = 0  # tokens added by chat framing
    fields: list[str] | None = None  # names of the texts when several fields are counted
    raw: Any = None  # the input record, kept for --add-field and error records
    raw_json: bytes | None = None  # its JSON text as read (kept with raw), so fields come back byte-for-byte
    error: str | None = None

    @property
    def where(self) -> str:
        return f"{self.source}:{self.line}" if self.line is not None else self.source


@dataclass(slots=True)
class Counted:
    """One record's outcome: its token count, or its error (record.error)."""

    record: Record
    tokens: int | None = None
    parts: list[int] | None = None  # per-field counts when several fields were counted
    meta: dict | None = None  # set when a fallback strategy counted this record


@dataclass(slots=True)
class CountedRun:
    """Consecutive records counted the planned way, as columns: each a single text (no per-field
    counts), no error. The pipeline's shard workers send these back so that merging, summarising
    and writing a run costs a few list operations in the parent, not one object a record.
    `raws` / `raw_jsons` are kept only for --add-field. `counted()` gives the same Counted objects
    the record-at-a-time path gives, for consumers that want those."""

    source: str
    first_pos: int
    lines: list[int]
    ids: list[Any]
    tokens: list[int]
    raws: list[Any] | None = None
    raw_jsons: list[bytes | None] | None = None

    def __len__(self) -> int:
        return len(self.tokens)

    def counted(self):
        raws, jsons = self.raws, self.raw_jsons
        for i, (line, rid, tokens) in enumerate(zip(self.lines, self.ids, self.tokens, strict=True)):
            raw = raws[i] if raws is not None else None
            raw_json = jsons[i] if jsons is not None else None
            rec = Record(self.first_pos + i, self.source, line, rid, (), 0, None, raw, raw_json)
            yield Counted(rec, tokens)


_MISSING = object()


def get_path(obj: Any, path: str) -> Any:
    """Value at a dotted path (`meta.body`, `messages.0.content`); _MISSING if absent."""
    if isinstance(obj, dict) and path in obj:
        return obj[path]
    cur = obj
    for part in path.split("."):
        if isinstance(cur, dict):
            cur = cur.get(part, _MISSING)
        elif isinstance(cur, list) and part.lstrip("-").isdigit():
            idx = int(part)
            cur = cur[idx] if -len(cur) <= idx < len(cur) else _MISSING
        else:
            return _MISSING
        if cur is _MISSING:
            return _MISSING
    return cur


def record_id(obj: Any, id_field: str | None) -> Any:
    """A record's id for the output: the (dotted) field's string or integer value, else None."""
    if id_field is None or not isinstance(obj, dict):
        return None
    value = obj[id_field] if id_field in obj else get_path(obj, id_field)
    return value if isinstance(value, (str, int)) and not isinstance(value, bool) else None


def type_name(value: Any) -> str:
    return "null" if value is None else {dict: "object", list: "array"}.get(type(value), type(value).__name__)


class TextOnly:
    """The framing of an extractor with no model (validate's fields): a text is itself; a chat
    `messages` array has no framing to count it with, so it is an error, not a guess."""

    rule = "text"

    def text(self, text: str) -> tuple[list[str], int]:
        return [text], 0

    def chat(self, messages: list, where: str = "messages", **_) -> tuple[list[str], int]:
        raise ExtractError(f"{where} is a chat messages array; only a text field can be read here")


def fields_given(fields: Any, what: str = "field") -> tuple[str, ...] | None:
    """The field names `fields` gives, by `-f`'s rule in every front end: a string is one or
    more names separated by commas (`"a,b"`; never its characters), a list or tuple holds such
    strings; names are stripped; None or an empty list means the default (auto). A value that
    names no field (`""`, `","`), a name that is not a string, or one given twice (its text
    would be counted twice) is a UsageError naming `what`."""
    from .errors import UsageError

    if fields is None:
        return None
    given = [fields] if isinstance(fields, str) else fields
    if not isinstance(given, (list, tuple)):
        raise UsageError(f"{what}: a name or a list of names, not {type(fields).__name__}")
    if not given:
        return None
    names = []
    for value in given:
        if not isinstance(value, str):
            raise UsageError(f"{what}: a name is a string, not {type(value).__name__}")
        names += [part.strip() for part in value.split(",") if part.strip()]
    if not names:
        raise UsageError(f"{what} {shown(fields)} names no field")
    _once(names, what)
    return tuple(names)


def _once(names, what: str) -> None:
    """A UsageError for a field named twice (its text would be counted twice)."""
    twice = next((name for i, name in enumerate(names) if name in names[:i]), None)
    if twice is not None:
        from .errors import UsageError

        raise UsageError(f"{what} {shown(twice)} is given twice; give each field once")


@dataclass(frozen=True, slots=True)
class Extractor:
    """Takes the countable text out of a record.

    fields: dotted paths; None means auto: a bare JSON string, else `messages` (chat), else `text`.
    framing: the model's framing (omnitok.families: OpenAIFraming, ClaudeFraming, ...): text -> texts + overhead, chat likewise;
    None: TextOnly.
    """

    fields: tuple[str, ...] | None = None
    framing: Any = None
    id_field: str | None = "id"

    def __post_init__(self):
        if self.fields is not None:
            _once(self.fields, "field")
        if self.framing is None:  # no model: texts are counted as they are, chats need a model
            object.__setattr__(self, "framing", TextOnly())

    def record_id(self, obj: Any) -> Any:
        return record_id(obj, self.id_field)

    def record(self, pos: int, source: str | None, line: int | None, obj: Any) -> Record:
        return record_of(self, pos, source, line, obj)

    def for_columns(self, names: list[str]) -> tuple[Extractor, list[str] | None]:
        """For a table with these columns: the extractor to use on its rows (auto mode picks
        `messages` or `text`) and the top-level columns it reads (None: all)."""
        wanted = list(self.fields) if self.fields else [c for c in ("messages", "text") if c in names][:1]
        if not wanted:
            raise ExtractError(f"no 'text' or 'messages' column; pass --field (columns: {', '.join(names)})")
        tops = []
        for name in wanted:
            top = name if name in names else name.split(".")[0]
            if top not in names:
                raise ExtractError(f"no column {top!r} (columns: {', '.join(names)})")
            tops.append(top)
        return (self if self.fields else Extractor((wanted[0],), self.framing, self.id_field)), tops

    def extract(self, obj: Any) -> tuple[list[str], int, list[str] | None]:
        """(texts, overhead, field names or None); raises ExtractError."""
        if self.fields is None:
            if type(obj) is dict and "messages" not in obj:  # the common record, {"text": "..."}
                value = obj.get("text")
                if type(value) is str:
                    return (*self.framing.text(value), None)
            if isinstance(obj, str):
                return (*self.framing.text(obj), None)
            if not isinstance(obj, dict):
                raise ExtractError(f"record is a JSON {type_name(obj)}; expected an object or a string")
            if "messages" in obj:
                return self._one(obj, "messages")
            if "text" in obj:
                return self._one(obj, "text")
            keys = field_names(obj)
            raise ExtractError(f"no 'text' or 'messages' field; pass --field (record has: {keys})")
        if len(self.fields) == 1:
            return self._one(obj, self.fields[0])
        texts: list[str] = []
        overhead = 0
        for name in self.fields:
            value = self._value(obj, name)
            if not isinstance(value, str):
                raise ExtractError(f"field {shown(name)} is {type_name(value)}, expected a string")
            framed, extra = self.framing.text(value)
            texts += framed
            overhead += extra
        return texts, overhead, list(self.fields)

    def _value(self, obj: Any, name: str) -> Any:
        value = get_path(obj, name) if isinstance(obj, (dict, list)) else _MISSING
        if value is _MISSING:
            keys = field_names(obj) if isinstance(obj, dict) else type_name(obj)
            raise ExtractError(f"field {shown(name)} missing (record has: {keys})")
        return value

    def _one(self, obj: Any, name: str) -> tuple[list[str], int, None]:
        value = self._value(obj, name)
        if isinstance(value, str):
            return (*self.framing.text(value), None)
        if isinstance(value, list):
            messages, extra = value, {}
            if isinstance(obj, dict) and name in obj:  # a top-level chat: its request's system and tools
                system = obj.get("system")
                if system is not None:
                    if not isinstance(system, (str, list)):
                        raise ExtractError(f"field 'system' is {type_name(system)}, expected a string or blocks")
                    messages = [{"role": "system", "content": system}, *value]
                tools = obj.get("tools")
                if tools is not None:
                    if not isinstance(tools, list) or not all(isinstance(t, dict) for t in tools):
                        raise ExtractError("field 'tools' must be an array of tool definitions (objects)")
                    if tools:
                        extra["tools"] = tools
            return (*self.framing.chat(messages, name, **extra), None)
        raise ExtractError(f"field {shown(name)} is {type_name(value)}, expected a string or a messages array")


def field_names(obj: dict) -> str:
    """A record's first field names, as an error message lists them (each cut and escaped)."""
    return ", ".join(shown(k, quote=False) for k in list(obj)[:10]) or "none"


def record_of(extractor, pos: int, source: str | None, line: int | None, obj: Any) -> Record:
    """The Record of one input object, by any extractor (record_id + extract: Extractor, compress's
    CompressExtractor): its id and texts, or, when they cannot be taken out of it, an error record
    carrying the reason and the object. Every reader builds its records here."""
    rec = Record(pos, source, line, extractor.record_id(obj))
    try:
        rec.texts, rec.overhead, rec.fields = extractor.extract(obj)
    except ExtractError as e:
        rec.error = str(e)
        rec.raw = obj
    return rec


_SURROGATE = re.compile("[\ud800-\udfff]")  # in a str only unpaired (the reader joins pairs)
LONE_SURROGATE = "a lone surrogate escape (\\ud800-\\udfff without its pair) is not Unicode text"


def lone_surrogate(obj: Any, depth: int = 0) -> bool:
    """Whether a JSON value (as the standard library reads it) holds a lone surrogate in any string,
    key or value: such a record is refused in every front end, as the command line's JSON reader
    refuses its line (README, "Input rules")."""
    if isinstance(obj, str):
        return not obj.isascii() and _SURROGATE.search(obj) is not None
    if depth > 64:  # deeper than any record a reader accepts
        return False
    if isinstance(obj, dict):
        return any(lone_surrogate(k, depth + 1) or lone_surrogate(v, depth + 1) for k, v in obj.items())
    if isinstance(obj, list):
        return any(lone_surrogate(v, depth + 1) for v in obj)
    return False
