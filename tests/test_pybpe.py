"""pybpe (omnitok/tokenizers/pybpe.py) gives tiktoken's ids: every character it splits itself (below
U+0100) in every context OpenAI's patterns tell apart, random texts of those characters, long
pieces (its heap merge), and the texts it hands to tiktoken; its decoding, token bytes, vocabulary
size and cuts are tiktoken's too."""

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from omnitok.assets.store import find_tiktoken_file
from omnitok.tokenizers.engines import TiktokenEngine
from omnitok.tokenizers.openai_encodings import ENCODINGS
from omnitok.tokenizers.pybpe import PyBpeEngine, _latin1, _merge
from omnitok.tokenizers.unicode_guard import CONTEXTS

LATIN1 = "".join(map(chr, range(256)))
# the characters whose class the patterns look at, more often than the other 256
CLASSES = (
    " \t\n\r\x0b\x0c\x1c\x1f\x85\xa0'sStTdDlLmMvVrReE09\u00b2\u00bdAz\u00aa\u00b5\u00c0\u00df\u00ff.,!?-_\u00d7\u00f7"
)


def _engines(encoding):
    spec = ENCODINGS[encoding]
    path, _ = find_tiktoken_file(spec.file, spec.url, spec.sha256)
    return PyBpeEngine(spec, path), TiktokenEngine(spec, path)


@pytest.fixture(scope="module", params=["o200k_base", "cl100k_base", "o200k_harmony"])
def pair(request):
    return _engines(request.param)


def test_every_latin1_character_in_every_context(pair):
    mine, ref = pair
    more = ("{c}{c}{c}", "{c} {c}", "  {c}", "{c}  x", "\r\n{c}", "{c}\r\n ", "'{c}", "x'{c}{c}", "9{c}9{c}9")
    texts = [ctx.format(c=c) for c in LATIN1 for ctx in (*CONTEXTS, *more)]
    assert [mine.encode(t) for t in texts] == [ref.encode(t) for t in texts]
    assert all(map(_latin1, texts))  # all split by pybpe, none handed to tiktoken


def test_random_latin1_texts(pair):
    mine, ref = pair
    rnd = random.Random(20261206)
    alphabet = CLASSES * 8 + LATIN1
    texts = ["".join(rnd.choices(alphabet, k=rnd.randrange(1, 40))) for _ in range(4000)]
    assert [mine.encode(t) for t in texts] == [ref.encode(t) for t in texts]
    assert mine.count_batch(texts) == [len(ref.encode(t)) for t in texts]


@settings(max_examples=300, deadline=None)
@given(text=st.text(alphabet=st.characters(max_codepoint=0xFF), max_size=60))
def test_property_latin1_o200k(text, ref_o200k):
    mine, _ = _pair_o200k()
    assert mine.encode(text) == ref_o200k.encode_ordinary(text)


@settings(max_examples=200, deadline=None)
@given(text=st.text(max_size=40))
def test_property_any_text_o200k(text, ref_o200k):
    """Texts with characters past U+00FF (and lone surrogates) are tiktoken's: the same answer."""
    mine, _ = _pair_o200k()
    assert mine.count(text) == len(ref_o200k.encode_ordinary(text))


_O200K: list = []


def _pair_o200k():
    if not _O200K:
        _O200K.append(_engines("o200k_base"))
    return _O200K[0]


@pytest.mark.parametrize(
    "text",
    [
        "1" * 5000,  # digits: pieces of three
        " " * 3000 + "x",
        "a" * 4000,
        "\n" * 2000,
        "!" * 3000,
        "\u00e9" * 2500,
        "ab" * 1500,
        "".join(random.Random(7).choices("abcdefghij\u00e9\u00fc", k=3000)),  # one long word of many merges
        "Supercalifragilisticexpialidocious" * 40,
    ],
    ids=lambda t: repr(t[:12]),
)
def test_long_pieces(pair, text):
    """A piece that is no token is merged over a heap; tiktoken rescans it after each merge: the
    same order, lowest rank and then leftmost."""
    mine, ref = pair
    assert mine.encode(text) == ref.encode(text)


def test_merge_order_ties_go_leftmost():
    """Three equal bytes: the pairs (0,1) and (1,2) have the same rank; the left one merges."""
    assert _merge(b"aaa", {b"a": 0, b"aa": 2}.get) == [2, 0]
    assert _merge(b"aaa", {b"a": 0, b"aa": 2, b"aaa": 9}.get) == [9]
    assert _merge(b"aab", {b"a": 0, b"b": 1, b"aa": 5, b"ab": 5}.get) == [5, 1]
    assert _merge(b"aab", {b"a": 0, b"b": 1, b"aa": 6, b"ab": 5}.get) == [0, 5]


def test_other_texts_go_to_tiktoken_once_needed(ref_o200k):
    mine, _ = _engines("o200k_base")
    assert mine.count("plain caf\u00e9 text") == len(ref_o200k.encode_ordinary("plain caf\u00e9 text"))
    assert mine._reference is None
    for text in (
        "\u03b3\u03ac\u03bc\u03bc\u03b1",
        "emoji \U0001fae8 ok",
        "a\ud800b \udfff",
        "\U000323b0/A",
        "\u017fs 's",
    ):
        assert mine.count(text) == len(ref_o200k.encode_ordinary(text)), text
        assert mine.encode(text) == ref_o200k.encode_ordinary(
            text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
        )
    assert mine._reference is not None


def test_decoding_and_vocabulary_are_tiktokens(pair):
    mine, ref = pair
    assert mine.vocab_size == ref.vocab_size
    # every id from the last ordinary ones through the special tokens and past the vocabulary
    ids = [
        *range(0, 300),
        *range(1000, ref.vocab_size + 50, 97),
        *range(min(mine._spec.special_tokens.values()) - 20, ref.vocab_size + 3),
    ]
    for i in ids:
        try:
            expected = ref.token_bytes(i)
        except KeyError:
            with pytest.raises(KeyError):
                mine.token_bytes(i)
            with pytest.raises(KeyError):
                mine.decode([1, i])
            continue
        assert mine.token_bytes(i) == expected, i
    known = [i for i in ids if _has(ref, i)]
    assert mine.decode(known) == ref.decode(known)
    assert mine.decode([9468]) == ref.decode([9468])  # a cut character: U+FFFD, as tiktoken shows it


def _has(ref, i) -> bool:
    try:
        ref.token_bytes(i)
    except KeyError:
        return False
    return True


@pytest.mark.parametrize(
    "text",
    [
        "hello world, caf\u00e9 \u00e0 la cr\u00e8me",
        "\u00ff\u00fe" * 30,
        "na\u00efve \u03b3\u03ac\u03bc\u03bc\u03b1 \U0001f600",
    ],
)
def test_cuts_are_tiktokens(pair, text):
    mine, ref = pair
    assert mine.encode_cuts(text) == ref.encode_cuts(text)


def test_the_table_holds_the_ranks():
    """assets/rank_table.py: every token's rank found, every rank's token, nothing else."""
    from omnitok.assets import rank_table

    mine, _ = _pair_o200k()
    ranks = mine._ranks()
    table = rank_table._checked(rank_table.build(ranks, "ab" * 32), "ab" * 32)
    assert len(table) == len(ranks) and table.top == max(ranks.values())
    assert all(table.get(token) == rank for token, rank in ranks.items())
    assert all(table.token(rank) == token for token, rank in ranks.items())
    assert dict(table.items()) == ranks
    for missing in (b"", b"\xff\xfe\xfd\xfc definitely not a token", b"x" * 300):
        assert table.get(missing) is None
    for rank in (-1, len(ranks) + 5, 10**12):
        with pytest.raises(KeyError):
            table.token(rank)


def test_a_table_with_holes_among_its_ranks():
    from omnitok.assets import rank_table

    ranks = {bytes([b]): b for b in range(256)} | {b"ab": 300, b"abc": 1000, b"  ": 257}
    table = rank_table._checked(rank_table.build(ranks, "cd" * 32), "cd" * 32)
    assert [table.token(r) for r in (0, 255, 257, 300, 1000)] == [b"\x00", b"\xff", b"  ", b"ab", b"abc"]
    for rank in (256, 258, 999, 1001):
        with pytest.raises(KeyError):
            table.token(rank)
    assert table.get(b"abc") == 1000 and table.get(b"abd") is None and table.top == 1000
    assert rank_table._checked(rank_table.build(ranks, "cd" * 32), "ef" * 32) is None  # another source


def test_without_the_table_the_dict_counts_alike(monkeypatch, ref_o200k):
    """Where the table form cannot be used (a big-endian machine), pybpe keeps the dict."""
    from omnitok.assets import rank_table

    monkeypatch.setattr(rank_table, "load", lambda *a: None)
    mine, _ = _engines("o200k_base")
    texts = ["hello world", "caf\u00e9 " * 50, "1234567 \t\n  x", "\u03b3\u03ac\u03bc\u03bc\u03b1"]
    assert [mine.encode(t) for t in texts] == [ref_o200k.encode_ordinary(t) for t in texts]
    assert mine.decode(mine.encode(texts[1])) == texts[1] and mine.vocab_size == 200019
    with pytest.raises(KeyError):
        mine.token_bytes(199998 + 3)


def test_shard_workers_defer_other_texts_to_the_reference_process(cli, tmp_path, monkeypatch, pools):
    """`--engine pybpe -j 2`: in shard workers (unicode_guard.DEFER_REFERENCE) a text past U+00FF
    is sent back (DEFERRED) for the pipeline's one reference process, as gigatoken's are, not
    counted by a tiktoken built in each worker; the counts are tiktoken's, in order."""
    import orjson

    from omnitok import pipeline
    from omnitok.io import shards
    from omnitok.tokenizers import unicode_guard

    mine, _ = _engines("o200k_base")
    monkeypatch.setattr(unicode_guard, "DEFER_REFERENCE", True)
    assert [mine.count("caf\u00e9"), mine.count("\u03b3\u03ac\u03bc\u03bc\u03b1")] == [2, unicode_guard.DEFERRED]
    assert mine._reference is None
    monkeypatch.setattr(unicode_guard, "DEFER_REFERENCE", False)

    monkeypatch.setattr(shards, "SHARD_MIN", 512)
    monkeypatch.setattr(shards, "SHARD_MAX", 2048)
    monkeypatch.setattr(pipeline, "SHARD_WORKER_TASKS", 16)
    rng = random.Random(5)
    words = ["caf\u00e9", "hello", "\u03b3\u03ac\u03bc\u03bc\u03b1", "\U0001f600", "12345", "don't", "\u6771\u4eac"]
    texts = [" ".join(rng.choices(words, k=rng.randint(1, 30))) for _ in range(400)]
    path = tmp_path / "in.jsonl"
    path.write_bytes(b"".join(orjson.dumps({"id": i, "text": t}) + b"\n" for i, t in enumerate(texts)))
    pybpe, reference = (
        cli("count", "-m", "gpt-4o", "--engine", e, "-j", j, str(path)) for e, j in (("pybpe", "2"), ("tiktoken", "1"))
    )
    assert (pybpe.code, reference.code) == (0, 0)
    rows = [orjson.loads(line) for line in pybpe.out.splitlines()]
    assert [(r["id"], r["tokens"], r["engine"]) for r in rows] == [
        (r["id"], r["tokens"], "pybpe") for r in map(orjson.loads, reference.out.splitlines())
    ]
    assert len(rows) == 400 and pools == [2]  # the shard path ran
