"""The library API: what `import omnitok` offers. The CLI is a thin skin over these."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from . import models
from .errors import UsageError
from .pipeline import Counted, count_records, default_jobs
from .records import ExtractError, Extractor, chat_texts


@dataclass(frozen=True, slots=True)
class CountResult:
    tokens: int
    model: str
    encoding: str
    strategy: str
    exact: bool

    def to_dict(self) -> dict:
        return {
            "tokens": self.tokens,
            "model": self.model,
            "encoding": self.encoding,
            "strategy": self.strategy,
            "exact": self.exact,
        }


def default_model() -> str:
    return os.environ.get("OMNITOK_MODEL") or models.DEFAULT_MODEL


def resolve(model: str | None = None, encoding: str | None = None) -> models.Resolution:
    """What a model id (or an explicit encoding) resolves to; raises UnknownModelError."""
    if encoding:
        return models.for_encoding(encoding, model)
    return models.resolve(model or default_model())


def load_tokenizer(model: str | None = None, *, encoding: str | None = None, engine: str = "auto"):
    """The loaded counting strategy for a model (cached per process)."""
    from .tokenizers import load_strategy

    return load_strategy(resolve(model, encoding).encoding, engine)


class Counter:
    """A model's tokenizer plus its chat framing: counts texts and chat message lists."""

    def __init__(self, model: str | None = None, *, encoding: str | None = None, engine: str = "auto"):
        self.resolution = resolve(model, encoding)
        self.strategy = load_tokenizer(model, encoding=encoding, engine=engine)

    def _result(self, tokens: int) -> CountResult:
        s = self.strategy
        return CountResult(tokens, self.resolution.model, s.encoding, s.name, s.exact)

    def _pieces(self, item: str | Sequence[dict]) -> tuple[list[str], int]:
        if isinstance(item, str):
            return [item], 0
        if isinstance(item, (list, tuple)):
            try:
                return chat_texts(list(item), self.resolution.chat_rule)
            except ExtractError as e:
                raise UsageError(str(e)) from None
        raise TypeError(f"expected a string or a list of chat messages, got {type(item).__name__}")

    def count(self, item: str | Sequence[dict]) -> CountResult:
        texts, overhead = self._pieces(item)
        return self._result(sum(self.strategy.count_batch(texts)) + overhead)

    def count_batch(self, items: Iterable[str | Sequence[dict]]) -> list[CountResult]:
        pieces = [self._pieces(item) for item in items]
        counts = self.strategy.count_batch([t for texts, _ in pieces for t in texts])
        out, i = [], 0
        for texts, overhead in pieces:
            out.append(self._result(sum(counts[i : i + len(texts)]) + overhead))
            i += len(texts)
        return out


def count(
    text: str | Sequence[dict], model: str | None = None, *, encoding: str | None = None, engine: str = "auto"
) -> CountResult:
    """Count the tokens of a text, or of a chat `messages` list with the model's framing.

    >>> omnitok.count("hello world", model="gpt-4o").tokens
    2
    """
    return Counter(model, encoding=encoding, engine=engine).count(text)


def count_batch(
    texts: Iterable[str | Sequence[dict]],
    model: str | None = None,
    *,
    encoding: str | None = None,
    engine: str = "auto",
) -> list[CountResult]:
    """Count many texts (or message lists) in one engine call; results in input order."""
    return Counter(model, encoding=encoding, engine=engine).count_batch(texts)


def count_files(
    paths: list[str],
    model: str | None = None,
    *,
    encoding: str | None = None,
    engine: str = "auto",
    fields: Sequence[str] | None = None,
    id_field: str | None = "id",
    input_format: str = "auto",
    lines: bool = False,
    keep_raw: bool = False,
    jobs: int | None = None,
) -> Iterator[Counted]:
    """Stream JSONL / Parquet / text files (or '-' for stdin) through the count pipeline.

    Yields one Counted per input record, in input order; a bad record has `record.error` set.
    """
    from .io.readers import InputStream

    counter = Counter(model, encoding=encoding, engine=engine)
    stream = InputStream(
        paths,
        Extractor(tuple(fields) if fields else None, counter.resolution.chat_rule, id_field),
        input_format,
        lines,
        keep_raw,
    )
    return count_records(stream, counter.strategy, jobs or default_jobs())
