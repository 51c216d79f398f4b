"""The library API: what `import omnitok` offers. The CLI is a thin skin over these."""

from __future__ import annotations

import functools
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from . import models
from .errors import UsageError
from .pipeline import Counted, count_records, default_jobs
from .records import ExtractError, Extractor


@dataclass(frozen=True, slots=True)
class CountResult:
    tokens: int
    model: str
    encoding: str
    strategy: str
    exact: bool
    error_band: float | None = None  # for estimates: the relative half-width of the likely error

    def to_dict(self) -> dict:
        out = {
            "tokens": self.tokens,
            "model": self.model,
            "encoding": self.encoding,
            "strategy": self.strategy,
            "exact": self.exact,
        }
        if self.error_band is not None:
            out["error_band"] = self.error_band
        return out


def default_model() -> str:
    return os.environ.get("OMNITOK_MODEL") or models.DEFAULT_MODEL


def resolve(model: str | None = None, encoding: str | None = None) -> models.Resolution:
    """What a model id (or an explicit encoding) resolves to; raises UnknownModelError."""
    if encoding:
        return models.for_encoding(encoding, model)
    return models.resolve(model or default_model())


def load_tokenizer(
    model: str | None = None, *, encoding: str | None = None, engine: str = "auto", tokenizer: str | None = None
):
    """The loaded counting strategy for a model (cached per process)."""
    return _load(resolve(model, encoding), engine, tokenizer)


@functools.lru_cache(maxsize=32)
def _load_hf(model_id: str, directory: str, where: str, engine: str):
    from .tokenizers.hf import HFStrategy

    return HFStrategy(model_id, Path(directory), engine, where)


@functools.lru_cache(maxsize=8)
def _load_claude(gen: str, engine: str):
    from .claude import ClaudeEstimate

    return ClaudeEstimate(gen, engine)


def _load(res: models.Resolution, engine: str = "auto", tokenizer: str | None = None):
    if res.family == "hf":
        from .assets.hf import find_hf_tokenizer

        directory, where = find_hf_tokenizer(res.encoding, tokenizer)
        return _load_hf(res.encoding, str(directory), where, engine)
    if tokenizer:
        raise UsageError(f"--tokenizer applies to Hugging Face models, not to {res.model!r} ({res.family})")
    if res.family == "claude":
        return _load_claude(res.encoding, engine)
    from .tokenizers import load_strategy

    return load_strategy(res.encoding, engine)


def framing_for(res: models.Resolution, strategy, special_tokens: bool = True):
    """How records become texts for this model: plain text, and chats in the provider's framing."""
    if res.family == "hf":
        from .framing import HFFraming

        return HFFraming(strategy, special_tokens)
    if res.family == "claude":
        from .claude import ClaudeFraming

        return ClaudeFraming()
    from .framing import OpenAIFraming

    return OpenAIFraming(res.chat_rule)


class Counter:
    """A model's tokenizer plus its framing: counts texts and chat message lists."""

    def __init__(
        self,
        model: str | None = None,
        *,
        encoding: str | None = None,
        engine: str = "auto",
        tokenizer: str | None = None,
        special_tokens: bool = True,
    ):
        self.resolution = resolve(model, encoding)
        self.strategy = _load(self.resolution, engine, tokenizer)
        self.framing = framing_for(self.resolution, self.strategy, special_tokens)

    @property
    def meta(self) -> dict:
        """The fields every result of this counter carries."""
        s = self.strategy
        out = {"model": self.resolution.model, "encoding": s.encoding, "strategy": s.name, "exact": s.exact}
        if not s.exact:
            out["error_band"] = s.error_band
        return out

    def _result(self, tokens: int) -> CountResult:
        s = self.strategy
        return CountResult(tokens, self.resolution.model, s.encoding, s.name, s.exact, getattr(s, "error_band", None))

    def _pieces(self, item: str | Sequence[dict]) -> tuple[list[str], int]:
        if isinstance(item, str):
            return self.framing.text(item)
        if isinstance(item, (list, tuple)):
            try:
                return self.framing.chat(list(item))
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
    text: str | Sequence[dict],
    model: str | None = None,
    *,
    encoding: str | None = None,
    engine: str = "auto",
    tokenizer: str | None = None,
    special_tokens: bool = True,
) -> CountResult:
    """Count the tokens of a text, or of a chat `messages` list with the model's framing.

    >>> omnitok.count("hello world", model="gpt-4o").tokens
    2
    """
    return Counter(model, encoding=encoding, engine=engine, tokenizer=tokenizer, special_tokens=special_tokens).count(
        text
    )


def count_batch(
    texts: Iterable[str | Sequence[dict]],
    model: str | None = None,
    *,
    encoding: str | None = None,
    engine: str = "auto",
    tokenizer: str | None = None,
    special_tokens: bool = True,
) -> list[CountResult]:
    """Count many texts (or message lists) in one engine call; results in input order."""
    return Counter(
        model, encoding=encoding, engine=engine, tokenizer=tokenizer, special_tokens=special_tokens
    ).count_batch(texts)


def count_files(
    paths: list[str],
    model: str | None = None,
    *,
    encoding: str | None = None,
    engine: str = "auto",
    tokenizer: str | None = None,
    special_tokens: bool = True,
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

    counter = Counter(model, encoding=encoding, engine=engine, tokenizer=tokenizer, special_tokens=special_tokens)
    stream = InputStream(
        paths,
        Extractor(tuple(fields) if fields else None, counter.framing, id_field),
        input_format,
        lines,
        keep_raw,
    )
    return count_records(stream, counter.strategy, jobs or default_jobs())
