"""Hugging Face models: counts equal transformers' AutoTokenizer on real tokenizer files."""

import os
import shutil

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import omnitok
from omnitok import config
from omnitok.errors import EXIT_NOT_EXACT

from .hf_assets import TOKENIZERS

os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")

TEXTS = [
    "",
    "hello world",
    "  leading spaces\n\n\ttabs and\r\nCRLF",
    "<|begin_of_text|>special-looking <|im_start|> strings <｜end▁of▁sentence｜>",
    "中文分词 日本語 한국어 emoji 🎉👩‍👩‍👧 e\u0301",
    "def f(x):\n    return x ** 2  # code\n",
    "a" * 5000,
    "The quick brown fox jumps over the lazy dog.",
]

CHATS = [
    [{"role": "user", "content": "hi"}],
    [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "What is 2+2?"},
        {"role": "assistant", "content": "4"},
        {"role": "user", "content": "And 3+3? 中文"},
    ],
]


@pytest.fixture(scope="module")
def auto():
    from transformers import AutoTokenizer

    return {label: AutoTokenizer.from_pretrained(str(d)) for label, (d, _) in TOKENIZERS.items()}


@pytest.mark.parametrize("label", sorted(TOKENIZERS))
@pytest.mark.parametrize("engine", ["auto", "tokenizers", "transformers"])
def test_counts_equal_autotokenizer(label, engine, auto):
    directory, model_id = TOKENIZERS[label]
    ref = auto[label]
    got = omnitok.count_batch(TEXTS, model=model_id, engine=engine, tokenizer=str(directory))
    assert [r.tokens for r in got] == [len(ref(t).input_ids) for t in TEXTS]
    assert {(r.strategy, r.exact, r.encoding) for r in got} == {("hf-tokenizer", True, f"hf:{model_id}")}
    counter = omnitok.Counter(model_id, engine=engine, tokenizer=str(directory), special_tokens=False)
    assert [r.tokens for r in counter.count_batch(TEXTS)] == [
        len(ref(t, add_special_tokens=False).input_ids) for t in TEXTS
    ]


def test_bos_is_counted_by_default(auto):
    directory, model_id = TOKENIZERS["llama3.2"]
    assert omnitok.count("", model=model_id, tokenizer=str(directory)).tokens == 1  # <|begin_of_text|>


@pytest.mark.parametrize("label", ["qwen2.5"])
def test_chat_template_equals_apply_chat_template(label, auto):
    directory, model_id = TOKENIZERS[label]
    ref = auto[label]
    for chat in CHATS:
        expected = len(ref.apply_chat_template(chat, tokenize=True, add_generation_prompt=True)["input_ids"])
        assert omnitok.count(chat, model=model_id, tokenizer=str(directory)).tokens == expected


def test_model_without_chat_template_says_so(cli):
    directory, model_id = TOKENIZERS["llama3.2"]
    r = cli(
        "count", "-m", model_id, "--tokenizer", str(directory), stdin=b'{"messages":[{"role":"user","content":"x"}]}\n'
    )
    assert r.code == 2
    assert "meta-llama/Llama-3.2-3B-Instruct has no chat template; count a text field instead (--field)" in r.err


@pytest.fixture(scope="module")
def engine_pairs():
    """Each model's default (gigatoken) and tokenizers strategies, looked up once for the 200
    examples below (load_tokenizer caches them per process: the same objects each time)."""
    pairs = []
    for label in ("llama3.2", "qwen2.5", "deepseek"):
        directory, model_id = TOKENIZERS[label]
        fast = omnitok.load_tokenizer(model_id, tokenizer=str(directory))
        pairs.append((fast, omnitok.load_tokenizer(model_id, tokenizer=str(directory), engine="tokenizers")))
    return pairs


@settings(max_examples=200, deadline=None)
@given(
    text=st.one_of(
        st.text(), st.lists(st.sampled_from(["<|im_start|>", "<|endoftext|>", " ", "\n", "'s", "中"])).map("".join)
    )
)
def test_gigatoken_matches_tokenizers(engine_pairs, text):
    for fast, ref in engine_pairs:
        assert fast.engine == "gigatoken" and ref.engine == "tokenizers"
        assert fast.count(text) == ref.count(text)


def hf_cache_with(tmp_path, label):
    directory, model_id = TOKENIZERS[label]
    repo = tmp_path / "hub" / ("models--" + model_id.replace("/", "--"))
    snap = repo / "snapshots" / "0123abc"
    snap.mkdir(parents=True)
    for f in directory.iterdir():
        if f.suffix in (".json", ".txt", ".model"):
            shutil.copy(f, snap / f.name)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0123abc")
    return tmp_path / "hub", model_id


def test_found_in_hf_cache(cli, tmp_path, monkeypatch, auto):
    hub, model_id = hf_cache_with(tmp_path, "qwen2.5")
    monkeypatch.setenv("HF_HUB_CACHE", str(hub))
    monkeypatch.setenv("OMNITOK_HOME", str(tmp_path / "omnitok"))
    r = cli("count", "-m", model_id, "--explain", stdin=b"hello there")
    assert r.code == 0 and r.out == b"%d\n" % len(auto["qwen2.5"]("hello there").input_ids)
    assert "Hugging Face cache" in r.err


def test_local_model_dirs_and_bedrock_id(cli, tmp_path, monkeypatch, auto):
    directory, model_id = TOKENIZERS["llama3.2"]
    monkeypatch.setenv("OMNITOK_LOCAL_MODEL_DIRS", f"{model_id}={directory}")
    (tmp_path / "empty.toml").write_text("")  # no settings from a config file (a missing one is an error)
    monkeypatch.setenv("OMNITOK_CONFIG", str(tmp_path / "empty.toml"))
    config.settings.cache_clear()
    try:
        r = cli("count", "-m", "us.meta.llama3-2-3b-instruct-v1:0", stdin=b"hello there")
    finally:
        config.settings.cache_clear()
    assert r.code == 0 and r.out == b"%d\n" % len(auto["llama3.2"]("hello there").input_ids)


def test_config_file_local_model_dirs(tmp_path, monkeypatch, auto):
    directory, model_id = TOKENIZERS["deepseek"]
    cfg = tmp_path / "config.toml"
    cfg.write_text(f'[local_model_dirs]\n"{model_id}" = "{directory}"\n')
    monkeypatch.setenv("OMNITOK_CONFIG", str(cfg))
    monkeypatch.delenv("OMNITOK_LOCAL_MODEL_DIRS", raising=False)
    config.settings.cache_clear()
    try:
        assert omnitok.count("hello there", model=model_id).tokens == len(auto["deepseek"]("hello there").input_ids)
    finally:
        config.settings.cache_clear()


def test_missing_assets_fall_back_to_heuristic_once(cli, tmp_path, monkeypatch):
    from omnitok.families.heuristic import HeuristicStrategy

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("OMNITOK_HOME", str(tmp_path / "omnitok"))
    rows = b'{"text": "hello there, general"}\n{"text": "second record"}\n'
    r = cli("count", "-m", "Qwen/Qwen2.5-72B-Instruct", stdin=rows)
    assert r.code == 0
    heur = HeuristicStrategy("qwen2")
    out = r.jsonl()
    assert [x["tokens"] for x in out] == heur.count_batch(["hello there, general", "second record"])
    assert {(x["strategy"], x["exact"], x["encoding"], x["error_band"]) for x in out} == {
        ("heuristic", False, "heuristic:qwen2", heur.error_band)
    }
    warnings = [line for line in r.err.splitlines() if "warning" in line]
    assert len(warnings) == 1 and "no tokenizer files for 'Qwen/Qwen2.5-72B-Instruct'" in warnings[0]
    assert "hf download Qwen/Qwen2.5-72B-Instruct" in warnings[0]


def test_missing_assets_strict_is_an_error(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("OMNITOK_HOME", str(tmp_path / "omnitok"))
    r = cli("count", "--strict", "-m", "Qwen/Qwen2.5-72B-Instruct", stdin=b"x")
    assert r.code == EXIT_NOT_EXACT
    assert r.err.startswith(
        "omnitok: error: Qwen/Qwen2.5-72B-Instruct: no tokenizer files for 'Qwen/Qwen2.5-72B-Instruct' on this machine"
    )
    assert "--strict asks for exact counts" in r.err


def test_jsonl_stream_hf(cli, auto):
    directory, model_id = TOKENIZERS["qwen2.5"]
    rows = [{"text": t} for t in TEXTS] + [{"messages": CHATS[1]}]
    r = cli(
        "count", "-m", model_id, "--tokenizer", str(directory), stdin=b"".join(orjson.dumps(x) + b"\n" for x in rows)
    )
    ref = auto["qwen2.5"]
    expected = [len(ref(t).input_ids) for t in TEXTS]
    expected.append(len(ref.apply_chat_template(CHATS[1], tokenize=True, add_generation_prompt=True)["input_ids"]))
    assert [x["tokens"] for x in r.jsonl()] == expected
