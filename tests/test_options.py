"""One options object per command (omnitok.options): CountOptions, CompressOptions,
ValidateOptions are checked once with the command line's own messages, round-trip as plain data,
count / compress / validate exactly as the keyword options do, and are what the command line
hands to every path (here, --ray's worker spec)."""

from __future__ import annotations

import json

import pytest

import omnitok
from omnitok import engine_core
from omnitok.api import CompressOptions, CountOptions, ValidateOptions
from omnitok.errors import UsageError

from .console import omnitok as run_omnitok

TEXTS = ["hello world", "a second, longer text with some punctuation: yes!", [{"role": "user", "content": "hi"}]]


def _json_round_trip(opts):
    return type(opts).from_dict(json.loads(json.dumps(opts.to_dict())))


def test_count_options_round_trip_and_count_the_same(tmp_path):
    opts = CountOptions(engine="tiktoken", special_tokens=False, timeout=5.0, retries=0, cache="off")
    again = _json_round_trip(opts)
    assert again == opts and hash(again) == hash(opts)
    assert opts.to_dict() == {
        "encoding": None,
        "engine": "tiktoken",
        "tokenizer": None,
        "special_tokens": False,
        "online": None,
        "strict": False,
        "concurrency": 8,
        "timeout": 5.0,
        "retries": 0,
        "cache": "off",
        "cache_dir": None,
        "l3_url": None,
        "settings": None,
        "cache_settings": None,
    }
    by_object = [r.tokens for r in omnitok.Counter("gpt-4o", options=again).count_batch(TEXTS)]
    by_keywords = [r.tokens for r in omnitok.Counter("gpt-4o", engine="tiktoken", cache="off").count_batch(TEXTS)]
    assert by_object == by_keywords == [2, 11, 8]
    # The keyword form builds the same object; keywords given with an object change its fields.
    assert (
        omnitok.Counter(
            "gpt-4o", engine="tiktoken", special_tokens=False, timeout=5.0, retries=0, cache="off"
        ).count_options
        == opts
    )
    changed = omnitok.Counter("gpt-4o", options=opts, encoding="cl100k_base")
    assert changed.count_options.encoding == "cl100k_base" and changed.count_options.engine == "tiktoken"
    assert changed.meta["encoding"] == "cl100k_base"
    assert omnitok.count("hello world", model="gpt-4o", options=opts).tokens == 2
    # Settings objects travel as plain data too, and come back equal.
    settings = omnitok.TokenizerSettings(prefer_offline=True, local_model_dirs={"org/m": str(tmp_path)})
    cache_settings = omnitok.CacheSettings(directory=str(tmp_path / "c"), l1_ttl=60.0)
    full = CountOptions(settings=settings, cache_settings=cache_settings, cache="on")
    back = _json_round_trip(full)
    assert back == full and back.cache_settings.directory == tmp_path / "c"
    assert back.to_dict()["settings"] == {
        "prefer_offline": True,
        "local_model_dirs": {"org/m": str(tmp_path)},
        "provider_keys": {},
    }


@pytest.mark.parametrize(
    "make, args",
    [
        (lambda: CountOptions(timeout=0.0), ["count", "--timeout", "0", "--text", "x"]),
        (lambda: CountOptions(timeout=float("nan")), ["count", "--timeout", "nan", "--text", "x"]),
        (lambda: CountOptions(retries=101), ["count", "--retries", "101", "--text", "x"]),
        (lambda: CompressOptions(method="magic"), ["compress", "--budget", "5", "--method", "magic", "--context", "-"]),
        (lambda: ValidateOptions(metrics="rouge-l,meteor"), ["validate", "--metrics", "rouge-l,meteor"]),
        (lambda: ValidateOptions(fail_on="p50"), ["validate", "--fail-on", "p50"]),
        (lambda: ValidateOptions(min_rouge_l=2.0), ["validate", "--min-rouge-l", "2"]),
        (lambda: ValidateOptions(max_ratio=-1.0), ["validate", "--max-ratio", "-1"]),
    ],
)
def test_a_bad_value_is_the_command_lines_error(make, args):
    with pytest.raises(UsageError) as e:
        make()
    r = run_omnitok(*args, stdin=b"some text")
    assert r.code == 2 and "Traceback" not in r.err
    assert r.err.splitlines()[0] == f"omnitok: error: {e.value.message}"


def test_other_checks_and_errors():
    with pytest.raises(UsageError, match="cache mode must be one of auto, on, off, not 'sometimes'"):
        CountOptions(cache="sometimes")
    with pytest.raises(TypeError, match="cache_settings must be a CacheSettings, not dict"):
        CountOptions(cache_settings={"directory": None})
    with pytest.raises(UsageError, match="unknown count option\\(s\\): bogus; known: encoding, engine"):
        CountOptions.from_dict({"bogus": 1})
    for options in (None, CountOptions()):  # a keyword that is no option: Python's own TypeError
        with pytest.raises(TypeError, match="unexpected keyword argument 'bogus'"):
            omnitok.Counter("gpt-4o", options=options, bogus=1)
    with pytest.raises(TypeError, match="options must be a CountOptions, not CompressOptions"):
        omnitok.Counter("gpt-4o", options=CompressOptions())
    with pytest.raises(UsageError, match="--timeout must be a finite number from 0.1 to 3600, not 0"):
        omnitok.count("x", model="gpt-4o", timeout=0)
    with pytest.raises(UsageError, match="--ratio must be"):  # per-call values stay the call's
        omnitok.compress("a b c. d e f.", model="gpt-4o", ratio=2, method="bm25")
    assert ValidateOptions(metrics=["compression"], min_rouge_l=0.5).scored == ("compression", "rouge-l")


def test_compress_options_compress_the_same():
    from omnitok.api import Compressor

    context = "\n\n".join(
        f"Passage {i}: the brown fox number {i} jumps over the lazy dog {i} times." for i in range(12)
    )
    opts = CompressOptions(method="bm25", gap_marker="[...]", dedup=False, cache="off")
    assert _json_round_trip(opts) == opts
    weighted = CompressOptions(method="bm25", weights=_weights(), cache="off")
    assert _json_round_trip(weighted) == weighted
    by_object = Compressor("gpt-4o", options=opts).compress(context, "fox 7", budget=40)
    by_keywords = Compressor("gpt-4o", method="bm25", gap_marker="[...]", dedup=False, cache="off").compress(
        context, "fox 7", budget=40
    )
    assert by_object == by_keywords and by_object.compressed_tokens <= 40 and "number 7" in by_object.compressed_text
    assert omnitok.compress(context, "fox 7", model="gpt-4o", budget=40, options=opts) == by_object


def _weights():
    from omnitok.compression import Weights

    return Weights(passage=0.5, gamma=0.25)


def test_validate_options_validate_and_judge_the_same():
    from omnitok.validation import Thresholds, score_pair
    from omnitok.validation.gates import judge as judge_pairs

    original, compressed = "The cat sat on the mat today.", "the cat on the mat"
    opts = ValidateOptions(metrics=("rouge-l", "compression"), min_rouge_l=0.5, max_ratio=0.9, fail_on="mean")
    assert _json_round_trip(opts) == opts
    by_object = omnitok.validate(original, compressed, options=opts)
    by_keywords = omnitok.validate(original, compressed, ["rouge-l", "compression"], 0.5, 0.9)
    assert by_object == by_keywords and by_object.passed is True and by_object.details["original_tokens"] == 8

    def rows():
        scores = score_pair(original, compressed, opts.scored)
        return [{"pos": 0, "where": "x", **scores}], [(original, compressed)]

    r1, p1 = rows()
    r2, p2 = rows()
    assert judge_pairs(r1, p1, opts) == judge_pairs(r2, p2, opts.scored, Thresholds(0.5, 0.9), "mean")
    assert r1 == r2


def test_worker_spec_carries_the_options_object():
    spec = engine_core.Spec("count", "gpt-4o", CountOptions(engine="tiktoken", cache="off"), ("text",))
    assert engine_core.Spec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec
    # The loose mapping of before gives the same object (workers: cache off unless asked).
    assert engine_core.Spec("count", "gpt-4o", {"engine": "tiktoken"}, ("text",)) == spec
    loose = engine_core.Spec(
        "validate", "gpt-4o", {"engine": "tiktoken"}, params={"metrics": ["compression"], "min_rouge_l": 0.5}
    )
    assert loose.options == ValidateOptions(
        metrics=("compression",), min_rouge_l=0.5, cache="off", count=CountOptions(engine="tiktoken", cache="off")
    )
    assert engine_core.Spec.from_dict(json.loads(json.dumps(loose.to_dict()))) == loose
    compress = engine_core.Spec("compress", "gpt-4o", {}, params={"budget": 10})
    assert compress.options == CompressOptions(method="bm25", cache="off")
    with pytest.raises(UsageError, match="--method must be one of auto, combined, bm25, dense; got 'x'"):
        engine_core.Spec("compress", "gpt-4o", {"method": "x"})


def test_count_ray_hands_the_workers_the_commands_options(tmp_path, monkeypatch):
    """`omnitok count --ray` builds one CountOptions from its flags: the worker spec carries it
    (cache auto -> off on a cluster), and a core built from that spec counts as the local
    Counter does with the same object."""
    pytest.importorskip("ray")
    import omnitok.ray as oray
    from omnitok import notices
    from omnitok.cli.app import main

    data = tmp_path / "in.jsonl"
    data.write_text('{"id": 1, "text": "hello world"}\n{"id": 2, "text": "a second record"}\n')
    seen = {}

    def stop(spec, payloads, **kw):
        seen["spec"] = spec
        raise UsageError("stopped before the job")

    monkeypatch.setattr(oray.files, "connect", lambda *a, **k: True)  # no cluster: the spec is the point
    monkeypatch.setattr(oray.files, "check_workers", stop)
    args = ["count", "--ray", "-m", "gpt-4o", str(data), "-o", str(tmp_path / "out"), "-q"]
    args += ["--engine", "tiktoken", "--no-special-tokens", "--timeout", "7", "--retries", "1", "--strict"]
    try:
        with pytest.raises(SystemExit) as e:
            main(args)
    finally:
        notices.set_handler(None)
    assert e.value.code == 2
    want = CountOptions(engine="tiktoken", special_tokens=False, timeout=7.0, retries=1, strict=True, cache="off")
    spec = seen["spec"]
    assert spec.options == want and spec.to_dict()["options"] == want.to_dict()
    core = engine_core.build(json.loads(json.dumps(spec.to_dict())))
    try:
        records = core.records(omnitok.api.open_inputs([str(data)], core.extractor()))
        local = omnitok.Counter("gpt-4o", options=want)
        assert (
            records.column("tokens").to_pylist()
            == [
                c.tokens
                for c in omnitok.api.count_stream(
                    omnitok.api.open_inputs([str(data)], omnitok.api.Extractor(None, local.framing)), local
                )
            ]
            == [2, 3]
        )
    finally:
        core.close()


def test_repr_masks_url_passwords_and_secret_parameters():
    from omnitok import CompressOptions, CountOptions, ValidateOptions

    count = CountOptions(l3_url="redis://user:hunter2secret@localhost:6379/0")
    compress = CompressOptions(embedding_url="https://u:sekretpass@h.example/x?api_key=abcdef123456")
    for obj in (count, ValidateOptions(count=count), compress):
        text = repr(obj)
        assert "hunter2secret" not in text and "sekretpass" not in text and "abcdef123456" not in text
    assert "l3_url='redis://***@localhost:6379/0'" in repr(count)
    assert CountOptions.from_dict(count.to_dict()) == count  # the value itself is kept for workers
