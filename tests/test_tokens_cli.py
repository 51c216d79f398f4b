"""encode / decode / truncate (issue 12 item 12), through the library and the real console script.

The references: tiktoken's own `encode_ordinary` (tests/conftest.py, no network), the `tokenizers`
library on shipped Hugging Face files (tests/hf_assets.py), and llama.cpp's test vectors for GGUF.
"""

from __future__ import annotations

import json
import os
import shutil
import unicodedata

import pytest

import omnitok
from omnitok.errors import UsageError
from omnitok.families.gemini import HF_TOKENIZERS
from omnitok.tokens import Encoder, parse_ids

from .console import omnitok as run
from .hf_assets import TOKENIZERS

TEXTS = [
    "hello world",
    "",
    " ",
    "héllo wörld, naïve café",
    "日本語のテキストです。中文字符，한국어",
    "emoji 😀👍🏽👨‍👩‍👧 and a flag 🇯🇵!",
    "<|endoftext|> is plain text, so are <|fim_prefix|> and <|endofprompt|>",
    "  leading spaces\n\n\ttabs and trailing   ",
    "def f(x):\n    return x ** 2  # code\n",
    "Ω≈ç√∫ 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 ½ ﬁ",
    "a" * 200 + " " + "😀" * 5,
]
OPENAI = [("gpt-4o", "ref_o200k"), ("gpt-4", "ref_cl100k")]


# --- the library --------------------------------------------------------------------------------


@pytest.mark.parametrize("engine", ["auto", "tiktoken"])
@pytest.mark.parametrize("model, ref", OPENAI)
def test_encode_is_tiktoken_encode_ordinary(model, ref, engine, request):
    ref = request.getfixturevalue(ref)
    enc = Encoder(model, engine=engine)
    for text in TEXTS:
        ids = enc.encode(text)
        assert ids == ref.encode_ordinary(text), text
        assert enc.decode(ids) == text
        assert len(ids) == omnitok.count(text, model=model).tokens
    assert omnitok.encode("hello world", model="gpt-4o") == [24912, 2375]
    assert omnitok.decode([24912, 2375], model="gpt-4o") == "hello world"


def test_encoding_option_and_special_ids(ref_cl100k):
    text = "x <|endoftext|>"
    assert omnitok.encode(text, encoding="cl100k_base") == ref_cl100k.encode_ordinary(text)
    # decode takes special ids too (tiktoken's decode does), though encode never makes them
    assert omnitok.decode([100257], model="gpt-4") == "<|endoftext|>"


@pytest.mark.parametrize("model, ref", OPENAI)
def test_truncate_is_the_longest_whole_token_prefix(model, ref, request):
    """count(truncate(x, n)) <= n, it is a prefix of x, and every longer prefix made of x's own
    tokens is either cut inside a character or over n."""
    ref = request.getfixturevalue(ref)
    enc = Encoder(model)
    for text in TEXTS:
        ids = ref.encode_ordinary(text)
        prefixes = []  # the text of each whole-token prefix that is whole characters
        for j in range(len(ids) + 1):
            try:
                prefixes.append(ref.decode_bytes(ids[:j]).decode("utf-8"))
            except UnicodeDecodeError:
                continue
        for n in [*range(0, min(len(ids), 40) + 2), len(ids) - 1, len(ids), len(ids) + 5]:
            if n < 0:
                continue
            got = enc.truncate(text, n)
            assert text.startswith(got)
            assert len(ref.encode_ordinary(got)) <= n
            assert got in prefixes, (text, n, got)
            longer = [p for p in prefixes if len(p) > len(got)]
            assert all(len(ref.encode_ordinary(p)) > n for p in longer), (text, n, got)
            if n >= len(ids):
                assert got == text


def test_truncate_never_splits_emoji_or_cjk():
    # cl100k spends 2 tokens on 😀 and 3 on 🇯 (with 🇵 another 3): a cut inside one drops it whole
    emoji = "😀😀😀"
    assert [omnitok.truncate(emoji, n, model="gpt-4") for n in range(7)] == [
        "",
        "",
        "😀",
        "😀",
        "😀😀",
        "😀😀",
        "😀😀😀",
    ]
    cjk = "語語語"  # 語 is 2 tokens in cl100k
    assert len(omnitok.encode("語", model="gpt-4")) == 2
    assert omnitok.truncate(cjk, 3, model="gpt-4") == "語"
    assert omnitok.truncate("a😀", 2, model="gpt-4") == "a"
    assert omnitok.truncate("hello world", 1, model="gpt-4o") == "hello"
    assert omnitok.truncate("", 0, model="gpt-4o") == ""
    assert omnitok.truncate("hello", 0, model="gpt-4o") == ""


def test_tokenize_gives_text_or_bytes():
    assert omnitok.tokenize("hi 😀", model="gpt-4o") == [(3686, "hi"), (88038, " 😀")]
    assert omnitok.tokenize("😀", model="gpt-4") == [(76460, b"\xf0\x9f\x98"), (222, b"\x80")]
    assert omnitok.tokenize("", model="gpt-4") == []


@pytest.fixture(scope="module")
def hf_refs():
    from tokenizers import Tokenizer

    return {label: Tokenizer.from_file(str(d / "tokenizer.json")) for label, (d, _) in TOKENIZERS.items()}


@pytest.mark.parametrize("engine", ["auto", "tokenizers"])
@pytest.mark.parametrize("label", sorted(TOKENIZERS))
def test_hf_encode_is_tokenizers_without_special_tokens(label, engine, hf_refs):
    directory, model_id = TOKENIZERS[label]
    enc = Encoder(model_id, tokenizer=str(directory), engine=engine)
    ref = hf_refs[label]
    for text in TEXTS:
        ids = enc.encode(text)
        assert ids == ref.encode(text, add_special_tokens=False).ids, text
        assert enc.decode(ids) == unicodedata.normalize("NFC", text)  # Qwen's normalizer is NFC
        counted = omnitok.count(text, model=model_id, tokenizer=str(directory), special_tokens=False)
        assert len(ids) == counted.tokens
        for n in range(len(ids) + 2):
            got = enc.truncate(text, n)
            assert text.startswith(got)
            assert len(got_ids := ref.encode(got, add_special_tokens=False).ids) <= n
            assert got_ids == ids[: len(got_ids)], (text, n, got)  # whole tokens of the text
    # a byte-level tokenizer shows the bytes of a cut character (DeepSeek splits 😀 in two)
    shown = enc.tokenize("😀 x")
    assert b"".join(t if isinstance(t, bytes) else t.encode() for _, t in shown) == "😀 x".encode()


def test_decode_builds_no_fast_engine_and_gives_the_references_text(hf_refs, ref_o200k, ref_cl100k):
    """A fast engine decodes through its reference's vocabulary, so an `auto` decode reads that
    vocabulary alone: pybpe's table for OpenAI encodings, `tokenizers` for a tokenizer.json (a
    Qwen decode was 0.9 s of CPU, 0.4 of it building gigatoken's engine for nothing). Its text is
    the reference's decode (tiktoken's; the tokenizers library's, special tokens shown)."""
    for model, ref in (("gpt-4o", ref_o200k), ("gpt-4", ref_cl100k)):
        dec = Encoder(model, purpose="decode")
        assert dec.strategy.engine == "pybpe"
        for text in TEXTS:
            ids = ref.encode_ordinary(text)
            assert dec.decode(ids) == ref.decode(ids) == text
    for label, (directory, model_id) in sorted(TOKENIZERS.items()):
        dec = Encoder(model_id, tokenizer=str(directory), purpose="decode")
        assert dec.strategy.engine == "tokenizers", label
        ids = [i for t in TEXTS for i in hf_refs[label].encode(t, add_special_tokens=True).ids]
        assert dec.decode(ids) == hf_refs[label].decode(ids, skip_special_tokens=False), label
        assert omnitok.decode(ids, model=model_id, tokenizer=str(directory)) == dec.decode(ids)


def test_hf_vocab_json_and_merges_only(tmp_path, hf_refs):
    """No tokenizer.json: transformers reads vocab.json + merges.txt (a fast tokenizer)."""
    directory, model_id = TOKENIZERS["qwen2.5"]
    for name in ("vocab.json", "merges.txt", "tokenizer_config.json"):
        shutil.copy(directory / name, tmp_path / name)
    enc = Encoder(model_id, tokenizer=str(tmp_path))
    assert enc.strategy.engine == "transformers"
    text = "héllo 😀 世界 x"
    ids = enc.encode(text)
    assert ids == hf_refs["qwen2.5"].encode(text, add_special_tokens=False).ids
    assert enc.decode(ids) == text
    assert enc.truncate(text, 4) == "héllo 😀"


@pytest.fixture(scope="module")
def llama_vectors():
    from .assets import llama_vocab

    if not llama_vocab.present():
        pytest.skip("llama.cpp test vectors missing: run `make install`")
    return llama_vocab


# Gemma 4's file is loaded under the id Gemini 3.1 counts with (omnitok/families/gemini.py): the same
# strategy (model id, directory, engine), so test_gemini_through_gemma4_encodes reuses its 262k
# vocabulary instead of loading it again (seconds of CPU).
GGUF_MODEL_IDS = {"gemma-4": HF_TOKENIZERS["gemma4"]}


@pytest.mark.parametrize("name", ["llama-spm", "phi-3", "llama-bpe", "qwen2", "gemma-4"])
def test_gguf_encode_is_llama_cpp(name, llama_vectors, monkeypatch, gguf_home):
    """GGUF vocabularies (SentencePiece and BPE, converted): ids equal llama.cpp's own test vectors
    (no BOS), decode gives the text back, and truncate works where no offsets are available."""
    monkeypatch.setenv("OMNITOK_HOME", gguf_home(name))  # tests/conftest.py: each file converted once a run
    enc = Encoder(GGUF_MODEL_IDS.get(name, f"local/{name}"), tokenizer=str(llama_vectors.path(name)))
    vectors = llama_vectors.vectors(name)
    assert [(text, enc.encode(text)) for text, _ in vectors] == vectors
    assert all(enc.decode(ids) == text for text, ids in vectors)
    text = "héllo 😀 世界 <s> x  y"
    ids = enc.encode(text)
    for n in range(len(ids) + 1):
        got = enc.truncate(text, n)
        assert text.startswith(got)
        got_ids = enc.encode(got)
        assert len(got_ids) <= n and got_ids == ids[: len(got_ids)], (n, got)
    assert enc.truncate(text, len(ids)) == text
    shown = b"".join(t if isinstance(t, bytes) else t.encode() for _, t in enc.tokenize("😀 世界"))
    assert shown.strip() == "😀 世界".encode()  # SentencePiece's leading space aside


def test_gemini_through_gemma4_encodes(llama_vectors, monkeypatch, gguf_home):
    """Gemini 3.1 is counted exactly with Gemma 4's tokenizer, so it encodes (Google's example is 10 tokens)."""
    monkeypatch.setenv("OMNITOK_HOME", gguf_home("gemma-4"))
    text = "The quick brown fox jumps over the lazy dog."
    ids = omnitok.encode(text, model="gemini-3.1-pro-preview", tokenizer=str(llama_vectors.path("gemma-4")))
    assert len(ids) == 10
    assert omnitok.decode(ids, model="gemini-3.1-pro-preview", tokenizer=str(llama_vectors.path("gemma-4"))) == text


def test_estimates_and_bad_input_are_usage_errors():
    with pytest.raises(UsageError, match=r"claude-sonnet-4-5 has no local tokenizer; encode needs an exact local one"):
        omnitok.encode("hi", model="claude-sonnet-4-5")
    with pytest.raises(UsageError, match=r"has no local tokenizer \(no tokenizer files for 'acme/nothing-here'"):
        omnitok.truncate("hi", 1, model="acme/nothing-here")
    with pytest.raises(UsageError, match=r"token id 300000 is not in o200k_base's vocabulary \(ids 0 to 200018\)"):
        omnitok.decode([1, 300000], model="gpt-4o")
    with pytest.raises(UsageError, match=r"token id 199998 is not in o200k_base's vocabulary"):
        omnitok.decode([199998], model="gpt-4o")  # a gap between the ranks and the special tokens
    with pytest.raises(UsageError, match="token id -1 "):
        omnitok.decode([-1], model="gpt-4o")
    with pytest.raises(UsageError, match="whole numbers"):
        omnitok.decode(["12"], model="gpt-4o")
    with pytest.raises(UsageError, match="max_tokens must be a whole number"):
        omnitok.truncate("hi", -1, model="gpt-4o")
    with pytest.raises(TypeError):
        omnitok.encode(b"bytes", model="gpt-4o")
    directory, model_id = TOKENIZERS["llama3.2"]
    with pytest.raises(UsageError, match=r"token id 128257 is not in meta-llama/Llama-3.2-3B-Instruct's vocabulary"):
        omnitok.decode([128257], model=model_id, tokenizer=str(directory))


def test_an_exact_strategy_that_cannot_encode_says_so(monkeypatch):
    """Gemini 2.x's Gemma 3 SentencePiece strategy (omnitok/gemini.py), or a plugin engine that only
    counts: exact, but with no encode."""

    class CountsOnly:
        name, exact, engine, encoding = "gemma-sentencepiece", True, "sentencepiece", "gemini:gemma3"

    import omnitok.strategy_chain

    monkeypatch.setattr(omnitok.strategy_chain, "offline", lambda res, opts: CountsOnly())
    with pytest.raises(UsageError, match=r"gemini-2.5-flash: its tokenizer \(gemma-sentencepiece.*cannot truncate"):
        omnitok.truncate("hi", 1, model="gemini-2.5-flash")


def test_lone_surrogates_are_cleaned_as_tiktoken_cleans_them(ref_o200k):
    text = "a\ud800b"
    assert omnitok.encode(text, model="gpt-4o") == ref_o200k.encode_ordinary(text)
    assert omnitok.truncate(text, 5, model="gpt-4o") == "a\ufffdb"


def test_parse_ids():
    assert parse_ids("1 2,3\n 4,,5 ") == [1, 2, 3, 4, 5]
    assert parse_ids("[1, 2, 3]") == [1, 2, 3]
    assert parse_ids("  ") == []
    assert parse_ids("[]") == []
    for bad in ("1.5", "x", "[1, true]", "[1, 2", '{"a": 1}', "0x10"):
        with pytest.raises(UsageError):
            parse_ids(bad)
    # the library takes the command line's rule: a bool is no id (True is an int to Python)
    for bad, shown in ((True, "True"), (1.0, "1.0"), ("1", "'1'")):
        with pytest.raises(UsageError, match=rf"^token ids are whole numbers, not {shown}$"):
            omnitok.decode([1, bad], model="gpt-4o")


# --- the console script ---------------------------------------------------------------------------


def test_cli_encode_equals_encode_ordinary(ref_o200k, ref_cl100k):
    text = "héllo 😀 世界 <|endoftext|>\n"
    r = run("encode", "-m", "gpt-4o", text)
    assert (r.code, r.err) == (0, "")
    assert r.out == " ".join(map(str, ref_o200k.encode_ordinary(text))).encode() + b"\n"
    r = run("encode", "--encoding", "cl100k_base", "--format", "json", stdin=text.encode())
    assert (r.code, json.loads(r.out)) == (0, ref_cl100k.encode_ordinary(text))
    r = run("encode", "-m", "gpt-4o", "hello", "world")  # arguments joined by spaces, as ttok joins them
    assert r.out == b"24912 2375\n"


def test_cli_encode_tokens():
    r = run("encode", "-m", "gpt-4", "--tokens", "hi 😀😀")
    assert r.code == 0
    assert r.out.decode().splitlines() == ["6151\t'hi'", "91416\t' 😀'", "76460\tb'\\xf0\\x9f\\x98'", "222\tb'\\x80'"]
    r = run("encode", "-m", "gpt-4", "--tokens", "--format", "json", "a😀")
    assert json.loads(r.out) == [
        {"id": 64, "text": "a"},
        {"id": 76460, "bytes": [240, 159, 152]},
        {"id": 222, "bytes": [128]},
    ]


def test_cli_decode_round_trip_and_truncate_exactly():
    text = "Ünïcödé 😀👍🏽 日本語 <|endoftext|>\n\n"
    ids = run("encode", "-m", "gpt-4o", stdin=text.encode()).out
    r = run("decode", "-m", "gpt-4o", stdin=ids)
    assert (r.code, r.out, r.err) == (0, text.encode(), "")  # exactly: no newline added
    joined = ids.decode().split()
    assert run("decode", "-m", "gpt-4o", ",".join(joined)).out == text.encode()
    assert run("decode", "-m", "gpt-4o", json.dumps([int(i) for i in joined])).out == text.encode()
    for n in (0, 3, 9, len(joined)):
        r = run("truncate", "-m", "gpt-4o", "--max-tokens", str(n), stdin=text.encode())
        assert (r.code, r.out) == (0, omnitok.truncate(text, n, model="gpt-4o").encode())
    r = run("truncate", "-m", "gpt-4o", "-t", "3", text)
    counted = run("count", "-m", "gpt-4o", stdin=r.out)
    assert int(counted.out) <= 3 and text.encode().startswith(r.out)


def test_cli_hf_encode(hf_refs):
    directory, model_id = TOKENIZERS["llama3.2"]
    text = "héllo 😀 世界 <|endoftext|>"
    r = run("encode", "-m", model_id, "--tokenizer", str(directory), "--format", "json", text)
    assert (r.code, json.loads(r.out)) == (0, hf_refs["llama3.2"].encode(text, add_special_tokens=False).ids)


def test_cli_empty_text_is_empty_output():
    assert run("encode", "-m", "gpt-4o", stdin=b"").out == b""
    assert run("encode", "-m", "gpt-4o", "--format", "json", "").out == b"[]\n"
    assert run("decode", "-m", "gpt-4o", stdin=b"").out == b""
    r = run("truncate", "-m", "gpt-4o", "-t", "5", stdin=b"")
    assert (r.code, r.out) == (0, b"")


@pytest.mark.parametrize(
    "args, stdin, message",
    [
        (["decode", "-m", "gpt-4o", "24912", "300000"], b"", "token id 300000 is not in o200k_base's vocabulary"),
        (["decode", "-m", "gpt-4o"], b"1 2 x3", "token ids are whole numbers, not 'x3'"),
        # nested past the interpreter's depth: was a RecursionError traceback
        (
            ["decode", "-m", "gpt-4o"],
            b"[" * 3000 + b"]" * 3000,
            "token ids: not a JSON array of numbers: nested too deep",
        ),
        (
            ["decode", "-m", "gpt-4o"],
            b"[[" + b"1," * 5000 + b"1]]",
            "token ids are whole numbers, not [1, 1, 1, 1, 1, 1, ...]",
        ),
        (["encode", "-m", "claude-sonnet-4-5", "hi"], b"", "claude-sonnet-4-5 has no local tokenizer; encode needs"),
        (["truncate", "-m", "gpt-4o", "hi"], b"", "Missing option '--max-tokens'"),
        (["truncate", "-m", "gpt-4o", "-t", "-1", "hi"], b"", "--max-tokens must be a whole number"),
        (["encode", "--format", "xml", "hi"], b"", "--format must be text or json"),
    ],
)
def test_cli_usage_errors(args, stdin, message):
    r = run(*args, stdin=stdin)
    assert r.code == 2, r.err
    assert r.out == b""
    assert r.err.startswith("omnitok: error: ") and message in r.err.splitlines()[0]
    assert "Traceback" not in r.err
    if args[0] == "decode":
        assert len(r.err.splitlines()) == 1


def test_cli_invalid_utf8_on_stdin_is_an_input_error():
    r = run("encode", "-m", "gpt-4o", stdin=b"ok\n\xff")
    assert (r.code, r.err) == (1, "omnitok: error: <stdin>:2: invalid UTF-8 (byte 0xff at column 1)\n")


def test_invalid_utf8_in_a_text_argument_is_an_input_error_as_on_stdin(tmp_path):
    """Bytes that are not UTF-8 in a text given as an argument reach Python as lone surrogates
    (surrogateescape): they were counted, encoded and truncated as U+FFFD without a word, where
    the same bytes from a file or stdin are an error naming the byte. Now the same error."""
    bad = os.fsdecode(b"a\xffb")  # what Python makes of argv's bytes
    (tmp_path / "ctx.txt").write_text("some context")
    for args, where in (
        (["count", "-m", "gpt-4o", "--text", bad], "--text"),
        (["encode", "-m", "gpt-4o", bad], "<argument>"),
        (["truncate", "-m", "gpt-4o", "-t", "5", "ok", bad], "<argument>"),
        (["validate", "--original", bad, "--compressed", "ab"], "--original"),
        (["compress", "--context", str(tmp_path / "ctx.txt"), "--query", bad, "--budget", "5"], "--query"),
    ):
        r = run(*args)
        column = 5 if args[0] == "truncate" else 2  # arguments joined by a space
        assert (r.code, r.out, r.err) == (
            1,
            b"",
            f"omnitok: error: {where}: invalid UTF-8 (byte 0xff at column {column})\n",
        )
    # one --text of several: a bad record, as a bad line is
    r = run("count", "-m", "gpt-4o", "--text", "ok", "--text", bad, "--on-error", "record")
    assert r.code == 4 and json.loads(r.out.splitlines()[1])["error"] == "invalid UTF-8 (byte 0xff at column 2)"
    # text that is UTF-8 is unchanged, whatever its script
    assert (
        run("encode", "-m", "gpt-4o", "café 中文").out
        == " ".join(map(str, omnitok.encode("café 中文", model="gpt-4o"))).encode() + b"\n"
    )


@pytest.mark.parametrize("command", ["encode", "decode", "truncate"])
def test_cli_help_has_examples(command):
    r = run(command, "--help")
    assert r.code == 0 and b"Examples:" in r.out and b"--model" in r.out


def test_the_library_refuses_a_string_of_ids_and_a_missing_budget_in_words():
    """decode("24912 2375") iterated the string's characters ("not '2'"), and truncate(text, None)
    raised Python's own TypeError ('<' not supported ...)."""
    for ids in ("24912 2375", b"24912"):
        with pytest.raises(UsageError, match=r"token ids are a list of whole numbers, not a (str|bytes) \(omnitok.api"):
            omnitok.decode(ids, model="gpt-4o")
    assert omnitok.decode(parse_ids("24912 2375"), model="gpt-4o") == "hello world"
    with pytest.raises(UsageError, match="max_tokens must be a whole number >= 0, not None"):
        omnitok.truncate("hello world", None, model="gpt-4o")
