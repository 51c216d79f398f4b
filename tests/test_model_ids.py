"""Every model id and prefix tiktoken knows resolves in omnitok to the same encoding, and counts as
tiktoken's encode_ordinary counts; an empty model id is a usage error, never the default model."""

import pytest
import tiktoken.model as tm

import omnitok
import omnitok.api
from omnitok import families
from omnitok.assets.store import find_tiktoken_file
from omnitok.errors import AssetError, UsageError
from omnitok.families import openai as openai_family
from omnitok.tokenizers.openai_encodings import ALIASES, ENCODINGS

from .conftest import reference_encoding
from .console import omnitok as run_omnitok

# Dated snapshots, variants, fine-tune tails: what a prefix stands for.
SUFFIXES = ["-2025-01-01", "-mini", "x", ":org:custom:abc123"]

SAMPLES = [
    "hello world",
    "The quick brown fox jumps over the lazy dog. It's 3.14159!\n\tdef f(x): return x ** 2",
    "中文分词 日本語 한국어 emoji 🎉👩‍👩‍👧 e\u0301",
    "<|endoftext|> <|start|>user<|message|>hi<|end|><|reserved_200100|> <|fim_prefix|>",
]

# Rank files omnitok embeds: counts of ids on these encodings are checked without any network.
EMBEDDED = {name for name, spec in ENCODINGS.items() if spec.file in ("o200k_base", "cl100k_base")}


def _ours(tiktoken_encoding: str) -> str:
    return ALIASES.get(tiktoken_encoding, tiktoken_encoding)


def _tiktoken_ids() -> list[tuple[str, str]]:
    """(id, tiktoken's encoding for it), for every exact id and every prefix + suffix, as
    tiktoken's own encoding_name_for_model resolves them."""
    ids = list(tm.MODEL_TO_ENCODING)
    ids += [prefix + suffix for prefix in tm.MODEL_PREFIX_TO_ENCODING for suffix in SUFFIXES]
    return [(m, tm.encoding_name_for_model(m)) for m in ids]


TIKTOKEN_IDS = _tiktoken_ids()


def test_tables_are_covered():
    assert set(tm.MODEL_TO_ENCODING) <= set(openai_family.MODELS)
    assert set(tm.MODEL_PREFIX_TO_ENCODING) <= set(openai_family.PREFIXES)
    assert {_ours(e) for e in tm.MODEL_TO_ENCODING.values()} | {
        _ours(e) for e in tm.MODEL_PREFIX_TO_ENCODING.values()
    } <= set(ENCODINGS)


@pytest.mark.parametrize("model,encoding", TIKTOKEN_IDS)
def test_resolves_like_tiktoken(model, encoding):
    res = families.resolve(model)
    assert (res.family, res.encoding) == ("openai", _ours(encoding))


@pytest.fixture(scope="module")
def refs(ref_o200k, ref_cl100k):
    """tiktoken's own encoding of each EMBEDDED name, loaded once for the module (a load is ~0.4 s)."""
    loaded = {"o200k_base": ref_o200k, "cl100k_base": ref_cl100k}
    return {name: loaded.get(name) or reference_encoding(name) for name in EMBEDDED}


@pytest.mark.parametrize("engine", ["gigatoken", "tiktoken", "auto"])
def test_counts_equal_encode_ordinary(engine, refs):
    checked = 0
    for model, encoding in TIKTOKEN_IDS:
        if _ours(encoding) not in EMBEDDED:
            continue
        ref = refs[_ours(encoding)]
        got = [r.tokens for r in omnitok.count_batch(SAMPLES, model=model, engine=engine, cache="off")]
        assert got == [len(ref.encode_ordinary(t)) for t in SAMPLES], model
        checked += 1
    assert checked > 20  # o200k_base, o200k_harmony and cl100k_base ids all went through


def test_o200k_harmony_is_o200k_base_plus_specials(refs):
    harmony, base = refs["o200k_harmony"], refs["o200k_base"]
    assert harmony._mergeable_ranks == base._mergeable_ranks and harmony._pat_str == base._pat_str
    assert set(base._special_tokens.items()) < set(harmony._special_tokens.items())
    for text in SAMPLES:
        assert harmony.encode_ordinary(text) == base.encode_ordinary(text)
    for model in ("gpt-oss-120b", "gpt-oss-20b", "openai/gpt-oss-20b"):
        r = omnitok.count(SAMPLES[3], model=model, cache="off")
        assert (r.encoding, r.exact, r.tokens) == ("o200k_harmony", True, len(harmony.encode_ordinary(SAMPLES[3])))


@pytest.mark.parametrize("encoding", sorted(set(ENCODINGS) - EMBEDDED))
def test_legacy_counts_where_the_vocabulary_is_present(encoding):
    """r50k/p50k rank files are not embedded: checked only where a verified copy is found offline."""
    spec = ENCODINGS[encoding]
    try:
        find_tiktoken_file(spec.file, spec.url, spec.sha256)
    except AssetError:
        pytest.skip(f"no {spec.file} rank file offline")
    import tiktoken
    import tiktoken_ext.openai_public as public

    path, _ = find_tiktoken_file(spec.file, spec.url, spec.sha256)
    real = public.load_tiktoken_bpe
    public.load_tiktoken_bpe = lambda url, expected_hash=None: real(str(path), expected_hash=expected_hash)
    try:
        ref = tiktoken.Encoding(**getattr(public, encoding)())
    finally:
        public.load_tiktoken_bpe = real
    ids = [m for m, e in TIKTOKEN_IDS if _ours(e) == encoding]
    for model in ids:
        got = [r.tokens for r in omnitok.count_batch(SAMPLES, model=model, cache="off")]
        assert got == [len(ref.encode_ordinary(t)) for t in SAMPLES], model


def test_encoding_gpt2_is_r50k_base():
    res = omnitok.api.resolve(encoding="gpt2")
    assert res.encoding == "r50k_base"


# --- an empty model id ----------------------------------------------------------------------


@pytest.mark.parametrize("model", ["", " ", "\t\n", "openai/ "])
def test_empty_model_id_resolve(model):
    if model == "openai/ ":  # a prefix with nothing after it is an unknown id, not gpt-4o either
        with pytest.raises(UsageError):
            families.resolve(model)
        return
    with pytest.raises(UsageError, match="model id is empty"):
        families.resolve(model)


@pytest.mark.parametrize("model", [" ", ""])
def test_empty_model_id_api(model):
    with pytest.raises(UsageError, match="model id is empty"):
        omnitok.Counter(model, cache="off")
    with pytest.raises(UsageError, match="model id is empty"):
        omnitok.count("hi", model=model)


@pytest.mark.parametrize("model", ["  ", ""])
def test_empty_model_id_console_script(model):
    r = run_omnitok("count", "-m", model, stdin=b"hello")
    assert (r.code, r.out) == (2, b"")
    assert r.err.splitlines()[0] == "omnitok: error: model id is empty"


def test_absent_model_is_still_the_default(monkeypatch):
    monkeypatch.delenv("OMNITOK_MODEL", raising=False)
    assert omnitok.count("hi", cache="off").model == families.DEFAULT_MODEL
