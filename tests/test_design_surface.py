"""The original design's Python surface, as thin forms over omnitok's objects: the async tokenizer
(`await omnitok.aio.Tokenizer().count(model, text)` -> `.count`, `.tokens`, `.is_exact`) and the
async cache (`omnitok.aio.Cache`: `key(model, text)`, `await get(key)`, `await set(key, n,
model_id=...)`, `get_stats()` with the design's field names). Expected counts from tiktoken."""

from __future__ import annotations

import asyncio

import pytest

from omnitok import aio

pytest.importorskip("tiktoken", reason="the reference counts (the test extra)")

DESIGN_STATS = (
    "l1_hits",
    "l2_hits",
    "l3_hits",
    "misses",
    "total_hits",
    "total_requests",
    "hit_rate",
    "l1_size",
    "l2_size",
)


def test_tokenizer_count_is_the_reference_count(ref_cl100k, ref_o200k):
    text = "Hello, world! Tokens, counted the design's way."
    expected = len(ref_cl100k.encode(text))  # gpt-4's encoding (tiktoken.encoding_for_model)

    async def main():
        return await aio.Tokenizer().count("gpt-4", text), await aio.Tokenizer(cache="off").count("gpt-4o", text)

    r, r4o = asyncio.run(main())
    assert (r.count, r.tokens, r.is_exact, r.model) == (expected, expected, True, "gpt-4")
    assert r4o.count == len(ref_o200k.encode(text))
    assert r.result.strategy == r.strategy == "tiktoken"


def test_tokenizer_estimate_says_it_is_not_exact():
    async def main():
        return await aio.Tokenizer().count("claude-sonnet-4-5", "Hello, world!")

    r = asyncio.run(main())
    assert r.is_exact is False and r.count > 0


def test_cache_get_set_and_stats(tmp_path, monkeypatch):
    monkeypatch.setenv("OMNITOK_CACHE_DIR", str(tmp_path / "cache"))

    async def main():
        cache = aio.Cache()
        try:
            key = cache.key("gpt-4", "Hello, world!")
            assert key == cache.sync.key("gpt-4", "Hello, world!")  # the key `omnitok count` stores under
            assert await cache.get(key) is None
            await cache.set(key, 4, model_id="gpt-4")
            got = await cache.get(key)
            with pytest.raises(ValueError, match="not made for model 'claude-sonnet-4-5'"):
                await cache.set(key, 4, model_id="claude-sonnet-4-5")
            return got, cache.get_stats()
        finally:
            cache.close()

    got, stats = asyncio.run(main())
    assert got == 4
    assert tuple(stats)[: len(DESIGN_STATS)] == DESIGN_STATS
    assert (stats["l1_hits"], stats["misses"], stats["total_hits"], stats["total_requests"]) == (1, 1, 1, 2)
    assert stats["hit_rate"] == 50.0 and stats["l1_size"] == 1 and stats["l2_size"] == 1
