"""Issue 25, items 5 and 11: odd inputs at the command line (blank lines before stdin JSONL, a
repeated --field, a very long model id) and wrong types at the Python API."""

from __future__ import annotations

import asyncio
import json

import pytest

import omnitok
from omnitok import aio
from omnitok.errors import UsageError
from omnitok.options import CompressOptions, CountOptions, ValidateOptions, Weights
from tests.console import omnitok as run


def _rows(out: bytes) -> list[dict]:
    return [json.loads(line) for line in out.splitlines()]


def _one_line_error(r, code: int) -> str:
    assert r.code == code, r.err
    assert "Traceback" not in r.err
    lines = r.err.splitlines()
    assert lines and lines[0].startswith("omnitok: error: ")
    return lines[0]


# --- item 5: stdin sniffing looks past any number of blank lines ---------------------------------


@pytest.mark.parametrize("blank", [b"\n", b" \t\r\n"])
@pytest.mark.parametrize("count", [10_000, 250_000])
def test_stdin_jsonl_after_many_blank_lines_is_jsonl(blank, count):
    data = blank * count + b'{"id": "a", "text": "hello world"}\n\n{"id": "b", "text": "hi"}\n'
    r = run("count", "--model", "gpt-4o", "--format", "jsonl", stdin=data)
    assert r.code == 0, r.err
    rows = _rows(r.out)
    assert [(row["id"], row["tokens"]) for row in rows] == [("a", 2), ("b", 1)]


def test_blank_lines_keep_their_line_numbers_serial_and_in_workers():
    data = b"\n" * 30_000 + b'{"text": "a"}\n{bad\n'
    for jobs in ("1", "2"):
        r = run("count", "-m", "gpt-4o", "--format", "jsonl", "--on-error", "record", "--jobs", jobs, stdin=data)
        assert r.code == 4, r.err
        rows = _rows(r.out)
        assert rows[0]["tokens"] == 1
        assert rows[1]["line"] == 30_002 and "invalid JSON" in rows[1]["error"]


def test_blank_lines_before_text_stay_part_of_the_text():
    data = b"\n" * 20_000 + b"hello there"
    r = run("count", "-m", "gpt-4o", "--format", "jsonl", stdin=data)
    assert r.code == 0, r.err
    expected = omnitok.count(data.decode(), model="gpt-4o").tokens
    assert _rows(r.out) == [{**_rows(r.out)[0], "tokens": expected}] and len(_rows(r.out)) == 1


def test_a_bom_before_blank_lines_and_jsonl():
    data = b"\xef\xbb\xbf" + b"\n" * 15_000 + b'{"text": "hello world"}\n'
    r = run("count", "-m", "gpt-4o", "--format", "jsonl", stdin=data)
    assert r.code == 0, r.err
    assert [row["tokens"] for row in _rows(r.out)] == [2]


# --- item 5: a repeated --field name is a usage error -------------------------------------------


@pytest.mark.parametrize(
    "args",
    [["--field", "text,text"], ["-f", "text", "-f", "text"], ["-f", "text, meta.body", "-f", " text"]],
)
def test_a_repeated_field_is_a_usage_error(args):
    r = run("count", "-m", "gpt-4o", *args, stdin=b'{"text": "a b c", "meta": {"body": "x"}}\n')
    line = _one_line_error(r, 2)
    assert line == "omnitok: error: --field 'text' is given twice; give each field once"
    assert r.out == b""


def test_a_repeated_field_is_refused_on_the_ray_path_too(tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_text('{"text": "a"}\n')
    r = run("count", "-m", "gpt-4o", "--ray", "-o", str(tmp_path / "out"), "-f", "text,text", str(src))
    assert "is given twice" in _one_line_error(r, 2)
    assert not (tmp_path / "out").exists()


def test_distinct_fields_still_count():
    r = run("count", "-m", "gpt-4o", "--format", "jsonl", "-f", "a,b", stdin=b'{"a": "hello world", "b": "hi"}\n')
    assert r.code == 0, r.err
    assert _rows(r.out)[0]["tokens"] == 3


def test_a_repeated_field_is_refused_by_the_api(tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_text('{"text": "a"}\n')
    with pytest.raises(UsageError, match="field 'text' is given twice"):
        list(omnitok.count_files([str(src)], "gpt-4o", fields=["text", "text"]))


# --- item 5: a very long model id ----------------------------------------------------------------


def test_a_600_character_model_id_is_a_short_usage_error():
    model = "gpt-4o-" + "x" * 593
    r = run("count", "--model", model, "--text", "hi")
    line = _one_line_error(r, 2)
    assert len(r.err) < 400 and model not in r.err and "600 characters" in line


# --- item 11: the Python API refuses wrong types with a message ----------------------------------


def test_count_with_a_model_that_is_no_string():
    with pytest.raises(TypeError, match="model must be a model id \\(a string\\) or None, not int 5"):
        omnitok.count("x", model=5)


@pytest.mark.parametrize("args, name", [((None, "x"), "original"), (("x", 5), "compressed"), ((b"x", "x"), "original")])
def test_validate_with_texts_that_are_no_strings(args, name):
    with pytest.raises(TypeError, match=f"validate: {name} must be a string, not "):
        omnitok.validate(*args)


def test_count_batch_of_one_string_is_refused():
    with pytest.raises(TypeError, match="count_batch takes a list of texts"):
        omnitok.count_batch("abc", model="gpt-4o")


@pytest.mark.parametrize("items", [{"text": "hi"}, "hi", 5])
def test_acount_rows_refuses_what_is_no_list_of_records(items):
    with pytest.raises(TypeError, match="rows must be a list of records"):
        asyncio.run(aio.acount_rows(items, "gpt-4o"))


def test_acount_rows_takes_a_list_and_a_generator():
    rows, _ = asyncio.run(aio.acount_rows([{"text": "hello world"}, "hi"], "gpt-4o"))
    assert [r["tokens"] for r in rows] == [2, 1]
    rows, _ = asyncio.run(aio.acount_rows((t for t in ["hi"]), "gpt-4o"))
    assert [r["tokens"] for r in rows] == [1]


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: CountOptions(special_tokens="no"), "CountOptions.special_tokens must be True or False, not str 'no'"),
        (lambda: CountOptions(strict=1), "CountOptions.strict must be True or False, not int 1"),
        (lambda: CountOptions(online="yes"), "CountOptions.online must be True or False or None, not str 'yes'"),
        (lambda: CountOptions(concurrency=True), "CountOptions.concurrency must be a whole number, not bool True"),
        (lambda: CountOptions(concurrency=2.5), "CountOptions.concurrency must be a whole number, not float 2.5"),
        (lambda: CountOptions(retries=False), "CountOptions.retries must be a whole number, not bool False"),
        (lambda: CountOptions(timeout="30"), "CountOptions.timeout must be a number, not str '30'"),
        (lambda: CountOptions(encoding=5), "CountOptions.encoding must be a string or None, not int 5"),
        (lambda: CountOptions(engine=None), "CountOptions.engine must be a string, not NoneType None"),
        (lambda: CountOptions(cache=True), "CountOptions.cache must be a string, not bool True"),
        (lambda: CompressOptions(dedup="false"), "CompressOptions.dedup must be True or False, not str 'false'"),
        (lambda: CompressOptions(method=1), "CompressOptions.method must be a string, not int 1"),
        (lambda: ValidateOptions(stem="yes"), "ValidateOptions.stem must be True or False, not str 'yes'"),
        (lambda: ValidateOptions(min_rouge_l="0.5"), "ValidateOptions.min_rouge_l must be a number or None"),
        (lambda: ValidateOptions(metrics=5), "ValidateOptions.metrics must be a list of metric names, not int"),
        (
            lambda: ValidateOptions(metrics=["rouge-l", 5]),
            "ValidateOptions.metrics holds names \\(strings\\), not int 5",
        ),
        (lambda: Weights(passage="0.3"), "Weights.passage must be a number, not str '0.3'"),
    ],
)
def test_options_objects_check_their_field_types(make, message):
    with pytest.raises(TypeError, match=message):
        make()


def test_options_types_reach_the_api_calls():
    with pytest.raises(TypeError, match="CountOptions.special_tokens must be True or False"):
        omnitok.count("x", model="gpt-4o", special_tokens="no")
    with pytest.raises(TypeError, match="ValidateOptions.stem must be True or False"):
        omnitok.validate("a b", "a", stem="yes")


def test_values_of_the_right_types_still_pass():
    opts = CountOptions(special_tokens=False, online=None, concurrency=4, timeout=5, retries=0, encoding="o200k_base")
    assert CountOptions.from_dict(opts.to_dict()) == opts
    assert CompressOptions(method="bm25", dedup=False, weights=Weights(passage=1, dense=0.5, gamma=0)).dedup is False
    assert ValidateOptions(metrics="rouge-l,compression", min_rouge_l=1, stem=True).scored == ("rouge-l", "compression")
    with pytest.raises(UsageError, match="cache mode must be one of"):  # a value from no set: the CLI's error
        CountOptions(cache="sometimes")
