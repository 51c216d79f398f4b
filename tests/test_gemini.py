"""Gemini offline: Gemma SentencePiece counts through the same library google-genai uses.

Google's Gemma vocabulary is not ours to ship and no PyPI package carries it, so these tests
train a small SentencePiece model at test time and pin its hash in place of Gemma 3's: what is
tested is the lookup, the verification and the counting path, against sentencepiece itself.
"""

import io

import pytest

import omnitok
from omnitok.errors import EXIT_NOT_EXACT
from omnitok.families import gemini

CORPUS = "\n".join(
    f"The quick brown fox {i} jumps over the lazy dog. Gemini counts tokens offline, élan vital 中文."
    for i in range(300)
)


@pytest.fixture
def gemma(tmp_path, monkeypatch):
    import sentencepiece as spm

    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(CORPUS.splitlines()), model_writer=buf, vocab_size=330, byte_fallback=True, minloglevel=2
    )
    home = tmp_path / "omnitok"
    vocab = gemini.SENTENCEPIECE["gemma3"]
    target = home / "assets" / "gemini" / vocab.filename
    target.parent.mkdir(parents=True)
    target.write_bytes(buf.getvalue())
    import hashlib

    monkeypatch.setitem(
        gemini.SENTENCEPIECE,
        "gemma3",
        gemini.SpmVocabulary(vocab.url, hashlib.sha256(buf.getvalue()).hexdigest(), vocab.filename),
    )
    monkeypatch.setenv("OMNITOK_HOME", str(home))
    from omnitok.families import gemini as families  # the module that holds _gemma_spm

    families._gemma_spm.cache_clear()
    yield spm.SentencePieceProcessor(model_file=str(target)), target
    families._gemma_spm.cache_clear()


TEXTS = ["The quick brown fox jumps over the lazy dog.", "", "  spaces\n\nand 中文 and ünïcödé 🎉"]


@pytest.mark.parametrize(
    "model", ["gemini-2.5-flash", "gemini-2.0-flash-001", "gemini-3-pro-preview", "gemini/gemini-2.5-pro"]
)
def test_counts_equal_sentencepiece(gemma, model):
    sp, _ = gemma
    results = omnitok.count_batch(TEXTS, model=model)
    assert [r.tokens for r in results] == [len(sp.encode(t)) for t in TEXTS]
    assert {(r.strategy, r.exact, r.encoding) for r in results} == {("gemma-sentencepiece", True, "gemini:gemma3")}


def test_chat_counts_part_texts(gemma):
    sp, _ = gemma
    msgs = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": [{"text": "Hello there"}]}]
    assert omnitok.count(msgs, model="gemini-2.5-flash").tokens == len(sp.encode("Be brief.")) + len(
        sp.encode("Hello there")
    )


def test_tampered_vocabulary_is_refused(gemma, cli):
    _, target = gemma
    target.write_bytes(target.read_bytes()[:-1] + b"x")
    r = cli("count", "-m", "gemini-2.5-flash", "--format", "json", stdin=b"hello")
    assert r.code == 0 and b'"strategy":"heuristic"' in r.out
    assert "has sha256" in r.err and "counting gemini-2.5-flash with the heuristic" in r.err
    r = cli("count", "--strict", "-m", "gemini-2.5-flash", stdin=b"hello")
    assert r.code == EXIT_NOT_EXACT


def test_model_table_follows_google():
    assert gemini.tokenizer_name("gemini-2.5-flash-lite") == "gemma3"
    assert gemini.tokenizer_name("gemini-3.5-flash") == "gemma4"
    assert gemini.tokenizer_name("gemini-3.1-pro-preview") == "gemma4"
    assert gemini.tokenizer_name("gemini-1.5-pro") is None
