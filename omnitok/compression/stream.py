"""Compressing a stream of records: every record in gives a result row or an error row out."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from ..errors import shown
from ..records import _MISSING, ExtractError, Extractor, field_names, get_path, record_id
from .segment import SegmentError

CONTEXT_FIELDS = ("context", "documents", "passages", "ctxs", "text")
QUERY_FIELDS = ("query", "question")


@dataclass(frozen=True)
class Job:
    context: Any
    query: str | None


@dataclass(frozen=True)
class CompressExtractor:
    """The context and query of a record (the shared reader's extractor interface)."""

    context_field: str | None = None
    query_field: str | None = None
    default_query: str | None = None
    id_field: str | None = "id"

    def for_columns(self, names: list[str]) -> tuple[CompressExtractor, None]:
        """A table's rows are read whole: the context and query may be under several names."""
        return self, None

    def record_id(self, obj: Any) -> Any:
        return record_id(obj, self.id_field)

    # The readers build every Record through their extractor: its id, then extract()'s job or the
    # error that says why there is none. Extractor's method needs only record_id and extract.
    record = Extractor.record

    def extract(self, obj: Any) -> tuple[list, int, None]:
        if isinstance(obj, str):  # a whole text input
            return [Job(obj, self.default_query)], 0, None
        if not isinstance(obj, dict):
            raise ExtractError(f"record is a JSON {type(obj).__name__}; expected an object")
        context = self._find(obj, self.context_field, CONTEXT_FIELDS, "context")
        if not isinstance(context, (str, list)):
            raise ExtractError(
                f"field {shown(self._name(obj, self.context_field, CONTEXT_FIELDS))} is "
                f"{type(context).__name__}, expected a string or a list of documents"
            )
        query = self.default_query
        if self.query_field is not None or any(f in obj for f in QUERY_FIELDS):
            found = self._find(obj, self.query_field, QUERY_FIELDS, "query", required=self.query_field is not None)
            if found is not None:
                if not isinstance(found, str):
                    name = self._name(obj, self.query_field, QUERY_FIELDS)
                    raise ExtractError(f"field {shown(name)} is {type(found).__name__}, expected a string")
                query = found
        return [Job(context, query)], 0, None

    @staticmethod
    def _name(obj: dict, explicit: str | None, auto: tuple[str, ...]) -> str:
        return explicit or next((f for f in auto if f in obj), auto[0])

    def _find(self, obj: dict, explicit: str | None, auto: tuple[str, ...], what: str, required: bool = True):
        if explicit is not None:
            value = get_path(obj, explicit)
            if value is _MISSING:
                raise ExtractError(f"field {shown(explicit)} missing (record has: {field_names(obj)})")
            return value
        for name in auto:
            if name in obj:
                return obj[name]
        if not required:
            return None
        raise ExtractError(
            f"no {what} field ({', '.join(auto)}); pass --{what}-field (record has: {', '.join(list(obj)[:10]) or 'none'})"
        )


def compress_stream(
    stream, compressor, jobs: int | None = 1, **budget
) -> Iterator[tuple[Any, dict | None, str | None]]:
    """(record, result row, error) for each record of an InputStream built with a CompressExtractor,
    in input order. With jobs other than 1, records are compressed in forked workers (pipeline.
    ordered_map) when the compressor is safe to fork: BM25 with no cache open (an embedding model's
    threads or a cache's database connection must not be copied into a fork); else here."""

    def one(rec):
        if rec.error is not None:
            return rec, None, rec.error
        job: Job = rec.texts[0]
        try:
            result = compressor.compress(job.context, job.query, **budget)
        except SegmentError as e:
            return rec, None, e.message
        return rec, result.to_dict(), None

    if jobs == 1 or not compressor.fork_safe:
        yield from map(one, stream)
        return
    from ..pipeline import ordered_map

    yield from ordered_map(one, stream, jobs, chunk=8)
