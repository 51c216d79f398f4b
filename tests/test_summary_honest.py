"""--summary is computed from the rows it summarises: a run that fell back to an estimate never
says exact."""

from __future__ import annotations

import orjson
import pytest

from omnitok.summary import Summary

from .mock_providers import API_KEY, MockProviders

TEXT = "the quick brown fox jumps over the lazy dog"
API = {
    "model": "claude-sonnet-4-5",
    "encoding": "claude",
    "strategy": "anthropic-api",
    "engine": "anthropic",
    "exact": True,
}
EST = {**API, "strategy": "claude-calibrated", "engine": "gigatoken", "exact": False, "error_band": 0.12}


@pytest.fixture
def anthropic(monkeypatch):
    m = MockProviders()
    monkeypatch.setenv("ANTHROPIC_API_KEY", API_KEY)
    monkeypatch.setenv("ANTHROPIC_BASE_URL", m.url)
    yield m
    m.close()


def test_summary_after_a_fallback_is_not_exact(cli, anthropic):
    anthropic.fail("anthropic", *[(500, {"retry-after": "0"}, {"type": "error", "error": {"type": "api_error"}})] * 9)
    rows = b"".join(orjson.dumps({"text": t}) + b"\n" for t in (TEXT, "two", "three"))
    r = cli("count", "--online", "--retries", "2", "-m", "claude-sonnet-4-5", "--summary", stdin=rows)
    assert r.code == 0, r.err
    s = orjson.loads(r.out)
    assert (s["strategy"], s["engine"], s["exact"], s["records"]) == ("claude-calibrated", "gigatoken", False, 3)
    assert s["error_band"] > 0


def test_summary_of_online_rows_is_exact(cli, anthropic):
    r = cli("count", "--online", "-m", "claude-sonnet-4-5", "--summary", stdin=TEXT.encode())
    s = orjson.loads(r.out)
    assert (s["strategy"], s["engine"], s["exact"]) == ("anthropic-api", "anthropic", True) and "error_band" not in s


def test_mixed_rows_are_mixed():
    s = Summary()
    s.add(5, None, None)  # as planned
    s.add(7, None, EST)  # a fallback
    s.add(9, None, API)  # the planned strategy, named
    meta = s.meta(API)
    assert meta == {
        "model": "claude-sonnet-4-5",
        "encoding": "claude",
        "strategy": "mixed",
        "engine": "mixed",
        "exact": False,
        "error_band": 0.12,
        "strategies": {"anthropic-api": 2, "claude-calibrated": 1},
        "engines": {"anthropic": 2, "gigatoken": 1},
    }
    assert Summary().meta(API) == API  # nothing counted: what the run planned


def test_one_engine_under_several_strategies_is_named():
    """Strategies differ but one engine counted every row: the summary names it, no `engines`."""
    s = Summary()
    s.add(5, None, None)
    s.add(7, None, {**EST, "model": "gpt-4o"})
    meta = s.meta({**EST, "strategy": "tiktoken", "exact": True, "error_band": None})
    assert (meta["strategy"], meta["engine"], "engines" in meta) == ("mixed", "gigatoken", False)
    assert meta["strategies"] == {"tiktoken": 1, "claude-calibrated": 1}
