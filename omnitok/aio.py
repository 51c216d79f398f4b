"""Async forms of the library API, for event loops (async applications).

    >>> from omnitok import aio
    >>> (await aio.acount("Hello, world!", model="gpt-4")).tokens
    4

Each call runs the same synchronous library code as the CLI (omnitok.api.Counter, the count
pipeline, omnitok.compression.Compressor, omnitok.validation.validate) on the process's default
runtime (omnitok.runtime: a thread pool, and Counters and Compressors lent per (model, options)),
so CPU-bound counting never blocks the event loop for long. One exception, where the hop to a
thread costs more than the work: `acount` of a short text counts on the calling thread when a
loaded local Counter is idle (omnitok.runtime.Runtime.count_inline).

Provider calls can be bounded (omnitok.remote.budget.configure, as `omnitok serve` does): each
acount, acount_batch, acount_rows, acompress and avalidate call is then one request with its own
budget of calls. The library code runs in a copy of the caller's context, so context variables
reach it as in a direct call. `omnitok serve` runs the same calls on a runtime of its own
(omnitok.serve.service).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from typing import Any

from .counter import check_batch
from .runtime import INLINE_MAX_CHARS, check_rows, default

__all__ = ["Cache", "Count", "Tokenizer", "acompress", "acount", "acount_batch", "acount_rows", "avalidate", "close"]


async def acount(item: str | Sequence[dict], model: str | None = None, **options):
    """omnitok.count, a CountResult for a text or a chat `messages` list: in the thread pool, or
    at once for a short text a loaded local Counter can take."""
    rt = default()
    if type(item) is str and len(item) <= INLINE_MAX_CHARS:
        r = rt.count_inline(item, model, **options)
        if r is not None:
            # A suspension point all the same: a loop of such calls held the event loop for its
            # whole length (20,000 short texts: 2.4 s) and starved every other task.
            await asyncio.sleep(0)
            return r
    return (await rt.request(rt.count_batch, [item], model, options))[0]


async def acount_batch(items: Iterable[str | Sequence[dict]], model: str | None = None, **options):
    """omnitok.count_batch in the thread pool: CountResults in input order."""
    check_batch(items)  # before list(): a str would be its characters, a dict its keys
    rt = default()
    return await rt.request(rt.count_batch, list(items), model, options)


async def acount_rows(items: Sequence[Any], model: str | None = None, **kwargs) -> tuple[list[dict], dict]:
    """Count in-memory records (texts, or objects with `text`, chat `messages` (+ `system`,
    `tools`) or the given `fields`) as `omnitok count` counts JSONL lines, in the thread pool:
    (rows, summary), each row as `omnitok count --format jsonl` writes it (keywords: fields,
    id_field, on_error: stop | skip | record, source, and the Counter's options)."""
    check_rows(items)
    rt = default()
    return await rt.request(rt.count_rows, list(items), model, **kwargs)


async def acompress(
    context,
    query: str | None = None,
    *,
    model: str | None = None,
    budget: int | None = None,
    ratio: float | None = None,
    target_compression: float | None = None,
    method: str = "auto",
    gap_marker: str | None = None,
    **options,
):
    """omnitok.compress in the thread pool (a CompressResult)."""
    budgets = {"budget": budget, "ratio": ratio, "target_compression": target_compression}
    options = {"method": method, "gap_marker": gap_marker, **options}
    rt = default()
    return await rt.request(rt.compress, context, query, model, budgets, options)


async def avalidate(original: str, compressed: str, **kwargs):
    """omnitok.validate in the thread pool (a ValidationResult)."""
    from .validation import validate

    return await default().request(validate, original, compressed, **kwargs)


def close() -> None:
    """Close the default runtime's Counters and Compressors (saving cache statistics) and stop
    its thread pool; the next call starts them again."""
    default().close()


# --- the original design's surface: thin forms over the objects above ------------------------


class Count:
    """A count as the original design's tokenizer gave it: `count` (the number of tokens; `tokens`
    is the same number, omnitok's name), `is_exact`, `model`, `strategy`, and `result`, the
    CountResult it reads."""

    __slots__ = ("result",)

    def __init__(self, result):
        self.result = result

    count = property(lambda self: self.result.tokens)
    tokens = property(lambda self: self.result.tokens)
    is_exact = property(lambda self: self.result.exact)
    model = property(lambda self: self.result.model)
    strategy = property(lambda self: self.result.strategy)

    def __repr__(self) -> str:
        return f"Count(count={self.count}, model={self.model!r}, strategy={self.strategy!r}, is_exact={self.is_exact})"


class Tokenizer:
    """The original design's async tokenizer: `await Tokenizer().count(model, text)` is a Count
    (acount with `options`, the Counter's keywords: online=, cache=, ...).

        >>> tok = Tokenizer()
        >>> r = await tok.count("gpt-4", "Hello, world!")
        >>> (r.count, r.tokens, r.is_exact)
        (4, 4, True)
    """

    def __init__(self, **options):
        self.options = options

    async def count(self, model: str | None, text: str | Sequence[dict]) -> Count:
        return Count(await acount(text, model, **self.options))


class Cache:
    """The original design's async cache over omnitok.cache_api.Cache (the one `omnitok count`
    stores its counts in): `key(model, text)`, `await get(key)`, `await set(key, n, model_id=...)`,
    `get_stats()`. Reads and writes run in the default runtime's thread pool (a disk or Redis tier
    may block).

        >>> cache = Cache()
        >>> key = cache.key("gpt-4", "Hello, world!")
        >>> await cache.set(key, 4, model_id="gpt-4")
        >>> await cache.get(key)
        4
        >>> cache.get_stats()["l1_hits"]
        1
    """

    def __init__(self, settings=None):
        from .cache_api import Cache as SyncCache

        self.sync = SyncCache(settings)

    def key(self, model: str | None, text: str, **options) -> str:
        return self.sync.key(model, text, **options)

    async def get(self, key: str) -> int | None:
        return await default().run_sync(self.sync.get, key)

    async def set(self, key: str, count: int, model_id: str | None = None) -> None:
        """Keep `count` under `key`; with `model_id`, the key must be one `key(model_id, ...)` makes
        (a ValueError otherwise: a count kept under another model's key would be read as its)."""
        if model_id is not None:
            self._check_model(key, model_id)
        await default().run_sync(self.sync.set, key, count)

    def get_stats(self) -> dict:
        """The original design's statistics: l1_hits, l2_hits, l3_hits, misses, total_hits,
        total_requests, hit_rate (percent), l1_size, l2_size, then omnitok's own (Cache.stats)."""
        return self.sync.stats()

    def close(self) -> None:
        self.sync.close()

    def _check_model(self, key: str, model_id: str) -> None:
        from .cache_api import cache_tags

        algorithm = self.sync.settings.hash_algorithm
        tags = cache_tags(model_id, True, algorithm) + cache_tags(model_id, False, algorithm)
        if key.partition(":")[0] not in tags:
            raise ValueError(
                f"the key {key[:40]!r} was not made for model {model_id!r} (use cache.key({model_id!r}, text))"
            )
