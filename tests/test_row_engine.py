"""Every count row names the engine that counted it (`engine`, after `strategy`): the strategy
says how a count is made (tiktoken: an OpenAI encoding; hf-tokenizer; claude-calibrated; an API),
the engine says what made it (gigatoken, tiktoken, tokenizers, a provider, the heuristic)."""

from __future__ import annotations

import csv
import io

import orjson
import pyarrow.parquet as pq
import pytest

import omnitok
from omnitok.strategy_chain import meta_of

from .console import omnitok as run
from .hf_assets import TOKENIZERS
from .mock_providers import API_KEY, MockProviders


def _row(*args: str, stdin: bytes = b"hello", env: dict | None = None) -> dict:
    r = run("count", "--format", "jsonl", "--cache", "off", *args, stdin=stdin, env=env)
    assert r.code == 0, r.err
    return orjson.loads(r.out)


@pytest.mark.parametrize(
    ("engine", "named"), [("auto", "pybpe"), ("pybpe", "pybpe"), ("tiktoken", "tiktoken"), ("gigatoken", "gigatoken")]
)
def test_openai_rows_name_the_engine(engine, named):
    row = _row("-m", "gpt-4o", "--engine", engine)
    assert list(row) == ["pos", "tokens", "model", "encoding", "strategy", "engine", "exact"]
    assert (row["strategy"], row["engine"], row["exact"]) == ("tiktoken", named, True)


@pytest.mark.parametrize(("engine", "named"), [("auto", "gigatoken"), ("tokenizers", "tokenizers")])
def test_hugging_face_rows_name_the_engine(cli, engine, named):
    directory, model_id = TOKENIZERS["llama3.2"]
    r = cli(
        "count", "-m", model_id, "--tokenizer", str(directory), "--engine", engine, "--format", "jsonl", stdin=b"hi"
    )
    row = orjson.loads(r.out)
    assert (row["strategy"], row["engine"], row["exact"]) == ("hf-tokenizer", named, True)


def test_estimates_name_what_they_are(cli):
    """A Claude offline estimate: the calibrated strategy over the engine that counted its base
    encoding (a small input: pybpe, as for OpenAI's models; the same count from every engine); a
    model with no files: the heuristic, which is its own engine."""
    text = ("Hello, wörld: ¿qué tal? 東京 " * 3).encode()  # past U+00FF too: pybpe hands it to tiktoken
    engines = ("auto", "gigatoken", "tiktoken")
    rows = {e: _row("-m", "claude-sonnet-4-5", "--engine", e, stdin=text) for e in engines}
    named = {e: (row["strategy"], row["engine"], row["exact"]) for e, row in rows.items()}
    assert named == {
        "auto": ("claude-calibrated", "pybpe", False),
        "gigatoken": ("claude-calibrated", "gigatoken", False),
        "tiktoken": ("claude-calibrated", "tiktoken", False),
    }
    assert len({row["tokens"] for row in rows.values()}) == 1 and rows["auto"]["tokens"] > 0
    assert _row("-m", "claude-sonnet-4-5", stdin=b"hi " * 30_000)["engine"] == "gigatoken"  # past SMALL
    row = orjson.loads(cli("count", "-m", "nobody-knows/this-model", "--format", "jsonl", stdin=b"hi").out)
    assert (row["strategy"], row["engine"], row["exact"]) == ("heuristic", "heuristic", False)


def test_online_rows_name_the_provider(monkeypatch):
    m = MockProviders()
    try:
        env = {"ANTHROPIC_API_KEY": API_KEY, "ANTHROPIC_BASE_URL": m.url}
        row = _row("--online", "-m", "claude-sonnet-4-5", env=env)
        assert (row["strategy"], row["engine"], row["exact"]) == ("anthropic-api", "anthropic", True)
    finally:
        m.close()


def test_csv_parquet_and_summary_carry_the_engine(cli, tmp_path):
    r = cli("count", "-m", "gpt-4o", "--engine", "tiktoken", "--format", "csv", stdin=b"hi")
    (row,) = csv.DictReader(io.StringIO(r.text))
    assert list(row)[7:9] == ["strategy", "engine"] and row["engine"] == "tiktoken"
    out = tmp_path / "x.parquet"
    assert cli("count", "-m", "gpt-4o", "-o", str(out), stdin=b"hi").code == 0
    table = pq.read_table(out)
    assert table.column_names[7:9] == ["strategy", "engine"] and table["engine"].to_pylist() == ["gigatoken"]
    s = orjson.loads(cli("count", "-m", "gpt-4o", "--summary", "--engine", "tiktoken", stdin=b"hi").out)
    assert (s["strategy"], s["engine"]) == ("tiktoken", "tiktoken")


def test_python_results_carry_the_engine():
    counter = omnitok.Counter("gpt-4o", engine="tiktoken", cache="off")
    assert counter.meta["engine"] == "tiktoken"
    r = counter.count("hello world")
    assert (r.strategy, r.engine) == ("tiktoken", "tiktoken")
    assert list(r.to_dict()) == ["tokens", "model", "encoding", "strategy", "engine", "exact"]


def test_a_strategy_without_an_engine_says_null():
    """A plugin strategy that names no engine: `engine` is null, not a guess."""

    class Plain:
        name, encoding, exact = "plain", "chars", True

    assert meta_of(Plain(), "m") == {
        "model": "m",
        "encoding": "chars",
        "strategy": "plain",
        "engine": None,
        "exact": True,
    }


def test_cache_warm_and_verify_of_a_small_input_serve_every_engine(tmp_path):
    """`cache warm` and `cache verify` follow count's small-input rule (pybpe for <= 64 KiB): the
    cache keys do not depend on the engine, so what pybpe stored is what gigatoken's count reads,
    and verify's recount agrees with it."""
    rows = b"".join(orjson.dumps({"text": f"row {i}: café, naïve, 東京 {i * 7}"}) + b"\n" for i in range(5))
    (tmp_path / "in.jsonl").write_bytes(rows)
    env = {"OMNITOK_CACHE_DIR": str(tmp_path / "cache")}
    r = run("cache", "warm", "-m", "gpt-4o", str(tmp_path / "in.jsonl"), env=env)
    assert r.code == 0 and orjson.loads(r.out)["stored"] == 5, r.err
    r = run("cache", "verify", "-m", "gpt-4o", str(tmp_path / "in.jsonl"), env=env)
    assert r.code == 0 and orjson.loads(r.out) | {"examples": []} == {
        "checked": 5,
        "cached": 5,
        "mismatched": 0,
        "damaged": 0,
        "examples": [],
        "l2_integrity": "ok",
    }, r.out
    args = ("count", "-m", "gpt-4o", "--engine", "gigatoken", "--cache", "on", "--summary", str(tmp_path / "in.jsonl"))
    summary = orjson.loads(run(*args, env=env).out)
    assert (summary["engine"], summary["cache"]["l2_hits"], summary["cache"]["misses"]) == ("gigatoken", 5, 0)


def test_cache_warm_reports_a_usage_error_with_stdin_left_open(tmp_path):
    """The small-input rule must not read stdin ahead for warm: with nothing to warm (no L2, no
    L3) the usage error comes at once, though the pipe feeding stdin stays open (a run that reads
    it blocks, and the wait's timeout fails the test)."""
    import subprocess

    from tests.console import OMNITOK

    with open(tmp_path / "err", "wb") as err:
        p = subprocess.Popen(
            [OMNITOK, "cache", "warm", "-m", "gpt-4o", "--cache-dir", "none"], stdin=subprocess.PIPE, stderr=err
        )
    try:
        assert p.wait(timeout=60) == 2
    finally:
        p.kill()
        p.stdin.close()
    assert (tmp_path / "err").read_text().startswith("omnitok: error: cache warm: nothing to warm")
