"""Counting: a model id becomes a Counter (resolution + strategy chain + framing + cache).

The stages (compression, validation, bundle, tokens) count through this module's Counter; the
library API (omnitok.api) and `import omnitok` re-export it."""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from . import families
from .errors import UsageError
from .options import CountOptions, build
from .pipeline import Counted, count_records
from .records import ExtractError, Extractor, fields_given
from .tokenizers import early_reference

if TYPE_CHECKING:
    from .config import TokenizerSettings


@dataclass(frozen=True, slots=True)
class CountResult:
    tokens: int
    model: str
    encoding: str
    strategy: str  # how it was counted: tiktoken (an OpenAI encoding), hf-tokenizer, claude-calibrated, ...
    engine: str | None  # what counted: gigatoken, tiktoken, tokenizers, sentencepiece, anthropic, heuristic, ...
    exact: bool
    error_band: float | None = None  # for estimates: the relative half-width of the likely error

    def to_dict(self) -> dict:
        out = {
            "tokens": self.tokens,
            "model": self.model,
            "encoding": self.encoding,
            "strategy": self.strategy,
            "engine": self.engine,
            "exact": self.exact,
        }
        if self.error_band is not None:
            out["error_band"] = self.error_band
        return out


def default_model() -> str:
    return os.environ.get("OMNITOK_MODEL") or families.DEFAULT_MODEL


def resolve(model: str | None = None, encoding: str | None = None, tokenizer: str | None = None) -> families.Resolution:
    """What a model id (or an explicit encoding) resolves to; raises UnknownModelError.

    A tokenizer path with no model id (and no encoding) names the model itself: the Hugging
    Face family counts with those files, whatever $OMNITOK_MODEL says."""
    if encoding:
        return families.for_encoding(encoding, model)
    if model is None and tokenizer:
        return families.Resolution(
            tokenizer, "hf", tokenizer, "template", f"--tokenizer {tokenizer!r} with no model id"
        )
    return families.resolve(default_model() if model is None else model)


def load_tokenizer(
    model: str | None = None, *, encoding: str | None = None, engine: str = "auto", tokenizer: str | None = None
):
    """The loaded offline counting strategy for a model (cached per process)."""
    from .strategy_chain import Options, offline

    return offline(resolve(model, encoding, tokenizer), Options(engine=engine, tokenizer=tokenizer))


_ENVIRON_LOCK = threading.Lock()


@contextlib.contextmanager
def _provider_keys(settings: TokenizerSettings | None):
    """The providers read their keys from the environment when they are made (in plan): a
    settings object's keys are put there for that moment, then the environment is restored."""
    overlay = settings.environment() if settings is not None else {}
    if not overlay:
        yield
        return
    with _ENVIRON_LOCK:
        saved = {name: os.environ.get(name) for name in overlay}
        os.environ.update(overlay)
        try:
            yield
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value


def check_batch(items) -> None:
    """A TypeError for a batch that is one text, bytes or a mapping (not one character, byte or
    key a text): count_batch's and acount_batch's rule."""
    if isinstance(items, (str, bytes, bytearray, dict)):
        raise TypeError(f"count_batch takes a list of texts or message lists, not one {type(items).__name__}")


class Counter:
    """A model's tokenizer plus its framing: counts texts and chat message lists."""

    def __init__(self, model: str | None = None, *, options: CountOptions | None = None, caches=None, **kwargs):
        """`options` (a CountOptions): how to count; keyword options (encoding=, engine=,
        tokenizer=, special_tokens=, online=, strict=, concurrency=, timeout=, retries=, cache=,
        cache_dir=, l3_url=, settings=, cache_settings=: CountOptions' fields) build one, or
        change those fields of `options`. The object used is `self.count_options`. `caches` (a
        cache.shared.SharedCaches): its cache is a view of the one there for its settings
        (shared with others, its tiers left open by close()); by default it opens its own."""
        from .strategy_chain import Options, plan

        if model is not None and not isinstance(model, str):
            raise TypeError(f"model must be a model id (a string) or None, not {type(model).__name__} {model!r:.80}")
        opts = self.count_options = build(CountOptions, options, kwargs)
        self.resolution = resolve(model, opts.encoding, opts.tokenizer)
        settings, online, tokenizer = opts.settings, opts.online, opts.tokenizer
        if settings is not None:
            if online is None:
                online = not settings.prefer_offline
            dirs = settings.local_model_dirs
            if tokenizer is None and self.resolution.family == "hf":
                tokenizer = dirs.get(self.resolution.model) or dirs.get(self.resolution.target)
        self.options = Options(
            opts.engine,
            tokenizer,
            opts.special_tokens,
            online,
            opts.strict,
            opts.concurrency,
            opts.timeout,
            opts.retries,
        )
        with _provider_keys(settings):
            strategy, self.framing = plan(self.resolution, self.options)
        self.cache = None
        if opts.cache != "off":
            from .cache import settings_from, wrap
            from .strategy_chain import cache_options

            tag = cache_options(self.resolution, opts.special_tokens)
            chosen = (
                opts.cache_settings if opts.cache_settings is not None else settings_from(opts.cache_dir, opts.l3_url)
            )
            strategy, self.cache = wrap(strategy, opts.cache, chosen, tag, caches)
        self.strategy = strategy
        self._fields: tuple | None = None  # count_text's result fields (made at its first count)
        early_reference.settle(strategy)  # a large count's reference process: kept if this strategy uses it

    def close(self) -> None:
        """Save cache statistics and the Bloom filter; release connections."""
        if self.cache is not None:
            self.cache.close()
            self.cache = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    @property
    def meta(self) -> dict:
        """The fields every result of this counter carries (unless a fallback counted it)."""
        from .strategy_chain import meta_of

        return meta_of(self.strategy, self.resolution.model)

    def _result(self, tokens: int) -> CountResult:
        s = self.strategy
        engine, band = getattr(s, "engine", None), getattr(s, "error_band", None)
        return CountResult(tokens, self.resolution.model, s.encoding, s.name, engine, s.exact, band)

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
        return self.count_batch([item])[0]

    def count_text(self, text: str) -> CountResult:
        """count(text) for one text, without count_batch's lists (omnitok serve's path for a
        short text): the same result and errors."""
        s = self.strategy
        count = getattr(s, "count", None)
        if type(text) is not str or count is None or hasattr(s, "last_meta"):  # a fallback or a cache
            return self.count_batch([text])[0]  # says per text who counted: its batch path
        texts, overhead = self.framing.text(text)
        if len(texts) != 1:
            return self.count_batch([text])[0]
        tokens = count(texts[0]) + overhead
        fields = self._fields
        if fields is None:  # what _result reads of a local strategy, read once
            r = self._result(0)
            fields = self._fields = (r.model, r.encoding, r.strategy, r.engine, r.exact, r.error_band)
        model, encoding, strategy, engine, exact, band = fields
        return CountResult(tokens, model, encoding, strategy, engine, exact, band)

    def count_batch(self, items: Iterable[str | Sequence[dict]]) -> list[CountResult]:
        check_batch(items)
        pieces = [self._pieces(item) for item in items]
        counts = self.strategy.count_batch([t for texts, _ in pieces for t in texts])
        metas = getattr(self.strategy, "last_meta", None)
        out, i = [], 0
        for texts, overhead in pieces:
            n = len(texts)
            meta = next((m for m in metas[i : i + n] if m), None) if metas else None
            tokens = sum(counts[i : i + n]) + overhead
            out.append(CountResult(tokens, **meta) if meta else self._result(tokens))
            i += n
        return out


def count(text: str | Sequence[dict], model: str | None = None, **options) -> CountResult:
    """Count the tokens of a text, or of a chat `messages` list with the model's framing.

    `options` are Counter's: `options=` a CountOptions, or its fields as keywords (encoding,
    engine, tokenizer, special_tokens, online, strict, ...).

    >>> omnitok.count("hello world", model="gpt-4o").tokens
    2
    """
    return Counter(model, **options).count(text)


def count_batch(texts: Iterable[str | Sequence[dict]], model: str | None = None, **options) -> list[CountResult]:
    """Count many texts (or message lists) in one engine call; results in input order."""
    return Counter(model, **options).count_batch(texts)


def count_files(
    paths: list[str],
    model: str | None = None,
    *,
    fields: Sequence[str] | None = None,
    id_field: str | None = "id",
    input_format: str = "auto",
    lines: bool = False,
    keep_raw: bool = False,
    jobs: int | None = None,
    **options,
) -> Iterator[Counted]:
    """Stream JSONL / Parquet / text files (or '-' for stdin) through the count pipeline.

    Yields one Counted per input record, in input order; a bad record has `record.error` set.
    """
    from .io.readers import InputStream

    counter = Counter(model, **options)  # options=CountOptions(...), or its fields as keywords
    stream = InputStream(
        paths,
        Extractor(fields_given(fields), counter.framing, id_field),
        input_format,
        lines,
        keep_raw,
    )

    def run() -> Iterator[Counted]:
        try:
            yield from count_records(stream, counter.strategy, jobs)
        finally:
            counter.close()

    return run()
