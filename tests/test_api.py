"""The library API works without the CLI."""

import orjson

import omnitok


def test_count_files_streams_in_order(tmp_path, ref_o200k):
    p = tmp_path / "a.jsonl"
    texts = [f"line {i} " * (i + 1) for i in range(50)]
    p.write_bytes(b"".join(orjson.dumps({"text": t, "id": i}) + b"\n" for i, t in enumerate(texts)) + b"{bad\n")
    out = list(omnitok.count_files([str(p)], model="gpt-4o", jobs=1))
    assert [(c.record.id, c.tokens) for c in out[:-1]] == [
        (i, len(ref_o200k.encode_ordinary(t))) for i, t in enumerate(texts)
    ]
    assert out[-1].record.error.startswith("invalid JSON") and out[-1].record.line == 51


def test_count_files_passes_counter_options(tmp_path):
    p = tmp_path / "b.txt"
    p.write_text("hello world")
    (c,) = omnitok.count_files([str(p)], model="my-deployment", encoding="cl100k_base", cache="off")
    assert c.tokens == 2


def test_counter_result_fields():
    r = omnitok.count("hello world", model="gpt-4o")
    assert r.to_dict() == {
        "tokens": 2,
        "model": "gpt-4o",
        "encoding": "o200k_base",
        "strategy": "tiktoken",
        "engine": "gigatoken",
        "exact": True,
    }
