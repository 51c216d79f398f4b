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

from collections.abc import Iterable, Sequence
from typing import Any

from .runtime import INLINE_MAX_CHARS, check_rows, default

__all__ = ["acompress", "acount", "acount_batch", "acount_rows", "avalidate", "close"]


async def acount(item: str | Sequence[dict], model: str | None = None, **options):
    """omnitok.count, a CountResult for a text or a chat `messages` list: in the thread pool, or
    at once for a short text a loaded local Counter can take."""
    rt = default()
    if type(item) is str and len(item) <= INLINE_MAX_CHARS:
        r = rt.count_inline(item, model, **options)
        if r is not None:
            return r
    return (await rt.request(rt.count_batch, [item], model, options))[0]


async def acount_batch(items: Iterable[str | Sequence[dict]], model: str | None = None, **options):
    """omnitok.count_batch in the thread pool: CountResults in input order."""
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
