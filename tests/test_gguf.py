"""GGUF vocabularies: converted tokenizers reproduce llama.cpp's own test vectors, id for id.

The files are llama.cpp's `models/ggml-vocab-*.gguf` with their `.inp`/`.out` vectors, from the
llama-cpp-python sdist on PyPI (fetched by `make install`, tests/assets/llama_vocab.py).
"""

from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

import omnitok
from omnitok.families.gemini import HF_TOKENIZERS
from omnitok.tokenizers import gguf

from .assets import llama_vocab

if not llama_vocab.present():
    pytest.fail(
        f"llama.cpp test vectors missing in {llama_vocab.ROOT}: run `make install` "
        "(or `python -m tests.assets.llama_vocab`)",
        pytrace=False,
    )

# vocabulary -> (tokenizer file written, BOS added by llama.cpp)
KINDS = {
    "gemma-4": ("tokenizer.json", True),
    "llama-bpe": ("tokenizer.json", True),
    "qwen2": ("tokenizer.json", False),
    "llama-spm": ("tokenizer.model", True),
    "phi-3": ("tokenizer.model", True),
}


# Gemma 4's file is counted under the id Gemini 3.1 counts with (omnitok/families/gemini.py): the
# same strategy (model id, directory, engine) for test_counts_through_omnitok, the Gemini test and
# gemma4_pair, so its 262k vocabulary is loaded once, not three times (seconds of CPU).
MODEL_IDS = {"gemma-4": HF_TOKENIZERS["gemma4"]}


@pytest.fixture(scope="module")
def converted(gguf_home):
    """Each file as gguf.convert wrote it, in the run's shared home (tests/conftest.py gguf_home):
    omnitok converts each file once a run, and the tests that count through omnitok read it there."""
    out = {}
    for name in KINDS:
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("OMNITOK_HOME", gguf_home(name))
            out[name] = gguf.converted_dir(llama_vocab.path(name))
    return out


@pytest.fixture(scope="module")
def references(converted):
    """references(name): the tokenizers library's reading of a converted tokenizer.json, loaded once
    a module (Gemma 4's is read by two tests; its 262k vocabulary takes seconds)."""
    from tokenizers import Tokenizer

    loaded = {}

    def reference(name):
        if name not in loaded:
            loaded[name] = Tokenizer.from_file(str(converted[name] / "tokenizer.json"))
        return loaded[name]

    return reference


def _encoder(directory, reference):
    if (directory / "tokenizer.json").is_file():
        tok = reference
        return lambda text: tok.encode(text, add_special_tokens=False).ids
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=str(directory / "tokenizer.model"))
    return sp.encode


@pytest.mark.parametrize("name", sorted(KINDS))
def test_converted_ids_equal_llama_cpp_vectors(name, converted, references):
    directory = converted[name]
    assert sorted(p.name for p in directory.iterdir()) == sorted([KINDS[name][0], "tokenizer_config.json"])
    encode = _encoder(directory, references(name) if KINDS[name][0] == "tokenizer.json" else None)
    vectors = llama_vocab.vectors(name)
    assert len(vectors) >= 45
    assert [(text, encode(text)) for text, _ in vectors] == vectors


@pytest.mark.parametrize("name", sorted(KINDS))
@pytest.mark.parametrize("engine", ["auto", "tokenizers"])
def test_counts_through_omnitok(name, engine, monkeypatch, gguf_home):
    home = gguf_home(name)  # shared with the other engine: the conversion does not depend on it
    monkeypatch.setenv("OMNITOK_HOME", home)
    if KINDS[name][0] == "tokenizer.model" and engine == "tokenizers":
        engine = "sentencepiece"
    texts, ids = zip(*llama_vocab.vectors(name), strict=True)
    path = str(llama_vocab.path(name))
    model = MODEL_IDS.get(name, f"local/{name}")
    counter = omnitok.Counter(model, tokenizer=path, engine=engine, special_tokens=False)
    got = counter.count_batch(list(texts))
    assert [r.tokens for r in got] == [len(i) for i in ids]
    assert {(r.strategy, r.exact) for r in got} == {("hf-tokenizer", True)}
    bos = int(KINDS[name][1])
    assert omnitok.count("", model=model, tokenizer=path, engine=engine).tokens == bos
    expected_engine = {"tokenizer.json": "gigatoken", "tokenizer.model": "sentencepiece"}[KINDS[name][0]]
    assert counter.strategy.engine == (expected_engine if engine == "auto" else engine)
    # converted once, then read from $OMNITOK_HOME/assets/gguf/
    assert len(list(Path(home, "assets", "gguf").iterdir())) == 1


def test_gemini_31_counts_googles_example_with_gemma4(monkeypatch, gguf_home):
    """Google's documented example: "The quick brown fox jumps over the lazy dog." is 10 tokens;
    Gemini counts text with no BOS."""
    monkeypatch.setenv("OMNITOK_HOME", gguf_home("gemma-4"))
    path = str(llama_vocab.path("gemma-4"))
    r = omnitok.count("The quick brown fox jumps over the lazy dog.", model="gemini-3.1-pro-preview", tokenizer=path)
    assert (r.tokens, r.exact, r.strategy) == (10, True, "hf-tokenizer")
    texts, ids = zip(*llama_vocab.vectors("gemma-4"), strict=True)
    got = omnitok.count_batch(list(texts), model="gemini-3.5-flash", tokenizer=path)
    assert [g.tokens for g in got] == [len(i) for i in ids]


def test_gemini_31_refuses_a_tokenizer_that_is_not_gemma_4s(monkeypatch, gguf_home):
    """A Llama 3 vocabulary given to gemini-3.1 was counted and labelled Gemma 4's, exact (21
    tokens where Gemma 4 gives 16, "encoding": "hf:google/gemma-4-E4B-it")."""
    from omnitok.errors import UsageError

    monkeypatch.setenv("OMNITOK_HOME", gguf_home("llama-bpe"))
    path = str(llama_vocab.path("llama-bpe"))
    with pytest.raises(UsageError, match="has 128,256 tokens, not the 262,144 of google/gemma-4-E4B-it's"):
        omnitok.count("hi", model="gemini-3.1-pro-preview", tokenizer=path)


@pytest.fixture(scope="module")
def gemma4_pair(converted, references, gguf_home):
    """Gemma 4 as converted (no pre-tokenizer, gigatoken), and the tokenizers reference of the file
    with llama.cpp's newline split: the reference test_converted_ids_equal_llama_cpp_vectors reads,
    not loaded again; the test puts the split on it for each example and takes it off after."""
    from tokenizers import Regex, pre_tokenizers

    ref = references("gemma-4")
    assert ref.pre_tokenizer is None  # as converted (the file's "pre_tokenizer" is null)
    split = pre_tokenizers.Split(Regex(r"\n+"), "isolated", invert=False)
    with pytest.MonkeyPatch.context() as mp:  # the strategy test_counts_through_omnitok loaded: not again
        mp.setenv("OMNITOK_HOME", gguf_home("gemma-4"))
        fast = omnitok.load_tokenizer(MODEL_IDS["gemma-4"], tokenizer=str(llama_vocab.path("gemma-4")))
    assert fast.directory == converted["gemma-4"]
    assert fast.engine == "gigatoken"
    return fast, ref, split


@settings(max_examples=150, deadline=None)
@given(
    text=st.one_of(st.text(), st.lists(st.sampled_from([" ", "\n", "\n\n", "a", "中", "▁", "\t", "é"])).map("".join))
)
@example(text="a\n\n\nb \n ")
def test_gemma4_without_newline_split_is_the_same(gemma4_pair, text):
    fast, ref, split = gemma4_pair
    ref.pre_tokenizer = split
    try:
        expected = len(ref.encode(text, add_special_tokens=False).ids)
    finally:
        ref.pre_tokenizer = None  # the file as converted again
    assert fast.count(text) == expected


def test_spm_control_tokens_in_text_count_once(converted, monkeypatch, tmp_path):
    """A chat template writes <s>; it is one token, as transformers' added tokens are."""
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=str(converted["phi-3"] / "tokenizer.model"))
    counter = omnitok.Counter("local/phi-3", tokenizer=str(converted["phi-3"]), special_tokens=False)
    assert counter.count("<s>hello</s>").tokens == 2 + len(sp.encode("hello")) == 3
    assert len(sp.encode("<s>hello</s>")) > 3  # spelled out by SentencePiece alone
    chat = [{"role": "user", "content": "Hello there"}]
    # phi-3's template renders "<s><|user|>\nHello there<|end|>\n<|assistant|>\n"; all four are control
    # tokens in this vocabulary.
    assert all(sp.is_control(sp.piece_to_id(t)) for t in ("<s>", "<|user|>", "<|end|>", "<|assistant|>"))
    assert counter.count(chat).tokens == 4 + sum(len(sp.encode(p)) for p in ("\nHello there", "\n", "\n")) == 12


def test_bad_gguf_files_say_what_is_wrong(cli, tmp_path):
    notgguf = tmp_path / "model.gguf"
    notgguf.write_bytes(b"not a gguf file at all")
    r = cli("count", "-m", "local/x", "--tokenizer", str(notgguf), stdin=b"hi")
    assert r.code == 1 and f"{notgguf}: not a GGUF file (no GGUF magic)" in r.err
    assert "Traceback" not in r.err
    truncated = tmp_path / "cut.gguf"
    truncated.write_bytes(llama_vocab.path("phi-3").read_bytes()[:5000])
    r = cli("count", "-m", "local/x", "--tokenizer", str(truncated), stdin=b"hi")
    assert r.code == 1 and f"{truncated}: truncated GGUF header" in r.err
