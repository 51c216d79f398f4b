"""HFStrategy reads only the head of a tokenizer.json (the members before "model": padding,
truncation, the post-processor) on a count's start-up, and the whole file where the head does not
answer; the counts are those of the whole file either way."""

import shutil

import orjson
import pytest

import omnitok
from omnitok.tokenizers.hf import _json_head

from .console import omnitok as run_omnitok
from .hf_assets import TOKENIZERS

NEEDED = ("truncation", "padding", "post_processor")
TEXTS = ["Hello world, tokenizers!", "naïve café 中文 " * 50, "def f(x):\n    return x ** 2\n"]


@pytest.mark.parametrize("label", sorted(TOKENIZERS))
def test_the_head_is_the_whole_files_members_before_model(label):
    data = (TOKENIZERS[label][0] / "tokenizer.json").read_bytes()
    full = orjson.loads(data)
    keys = list(full)
    head = _json_head(data, NEEDED)
    assert head == {k: full[k] for k in keys[: keys.index("model")]}


@pytest.mark.parametrize(
    "data",
    [
        b"\xff\xfe{}",  # not UTF-8
        b"[1, 2]",  # not an object
        b'\xef\xbb\xbf{"padding": null, "truncation": null, "post_processor": null, "model": {}}',  # a BOM
        b'{"padding": null, "model": {}, "truncation": null, "post_processor": null}',  # needed after model
        b'{"padding": null, "truncation": null, "post_processor": null}',  # no model
        b'{"padding": nul, "truncation": null, "post_processor": null, "model": {}}',  # broken before model
        b'{"padding": null "truncation": null, "post_processor": null, "model": {}}',  # no comma
        b'{padding: null, "model": {}}',  # a key that is not a string
        b'{"padding": null, "truncation": null, "post_processor": null, "model" {}}',  # no colon
        b"",
        b'{"padding": ' + b"[" * 100_000 + b"]" * 100_000 + b', "model": {}}',  # too deep for the stdlib
    ],
)
def test_no_head_where_the_file_is_not_laid_out_so(data):
    assert _json_head(data, NEEDED) is None


def test_a_head_is_found_past_white_space_and_nested_model_keys():
    data = b' \n{ "padding" : {"model": 1} ,\t"truncation":null,"post_processor":null , "model": [broken'
    assert _json_head(data, NEEDED) == {"padding": {"model": 1}, "truncation": None, "post_processor": None}


def _reordered(tmp_path, src, doc: dict, shaped: bool):
    """Qwen's tokenizer.json (`doc`, parsed once for both calls and not changed) with "model" first,
    so the head says nothing; shaped: padded to 64 and truncated to 8 (what a count must ignore)."""
    doc = dict(doc)
    if shaped:
        doc["padding"] = {"strategy": {"Fixed": 64}, "direction": "Right", "pad_to_multiple_of": None,
                          "pad_id": 0, "pad_type_id": 0, "pad_token": "!"}  # fmt: skip
        doc["truncation"] = {"direction": "Right", "max_length": 8, "strategy": "LongestFirst", "stride": 0}
    doc = {"model": doc.pop("model"), **doc}
    dest = tmp_path / ("shaped" if shaped else "plain")
    dest.mkdir()
    (dest / "tokenizer.json").write_bytes(orjson.dumps(doc))
    shutil.copy(src / "tokenizer_config.json", dest / "tokenizer_config.json")
    return dest


def test_a_file_with_model_first_is_read_whole(tmp_path):
    from tokenizers import Tokenizer

    src, model_id = TOKENIZERS["qwen2.5"]
    ref = Tokenizer.from_file(str(src / "tokenizer.json"))
    want = [len(ref.encode(t).ids) for t in TEXTS]  # with the template's specials (none for Qwen)
    doc = orjson.loads((src / "tokenizer.json").read_bytes())  # 7 MB: orjson is several times json's speed
    for shaped in (False, True):
        directory = _reordered(tmp_path, src, doc, shaped)
        assert _json_head((directory / "tokenizer.json").read_bytes(), NEEDED) is None
        counter = omnitok.Counter(model_id, tokenizer=str(directory), cache="off")
        assert [r.tokens for r in counter.count_batch(TEXTS)] == want
        assert counter.count_batch(TEXTS)[1].tokens > 64


def test_a_tokenizer_json_that_is_not_an_object_is_an_asset_error(tmp_path):
    """Each was a traceback ('list' object has no attribute 'get'; a RecursionError); now the same
    exit code and one-line form as a tokenizer.json that is not JSON."""
    path = tmp_path / "tokenizer.json"
    deep = '{"padding": ' + "[" * 100_000 + "]" * 100_000 + ', "model": {}}'  # too deep for orjson and json
    for text, why in (
        ("[1, 2, 3]", "not a tokenizer.json (its top level is not a JSON object)"),
        ("{bad", "not valid JSON"),
        (deep, "not valid JSON: nested too deeply"),
    ):
        path.write_text(text)
        r = run_omnitok("count", "-m", "Qwen/Qwen2.5-7B-Instruct", "--tokenizer", str(tmp_path), stdin=b"hi\n")
        assert (r.code, r.out) == (1, b"")
        assert r.err.startswith(f"omnitok: error: {path}: {why}")
        assert "Traceback" not in r.err
