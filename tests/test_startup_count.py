"""Start-up of the commonest count (issue 26 item 2): `omnitok count [-m MODEL] [--summary] [-q]
[FILE ...]` is read without click (cli.app._plain_count), so typer's pydantic adapters are not
built; it must answer exactly as the click path does. The click path is forced by adding
`--on-error stop`, the default, which the plain reading does not take."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.console import omnitok

CLICK = ("--on-error", "stop")  # the default, so the same run, read by click


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    path = tmp_path_factory.mktemp("startup") / "in.jsonl"
    path.write_text('{"id": 7, "text": "hello world"}\n{"id": 18446744073709551617, "text": "caf\\u00e9 \\u6771"}\n')
    return path


@pytest.fixture(scope="module")
def bad(tmp_path_factory):
    path = tmp_path_factory.mktemp("startup") / "bad.jsonl"
    path.write_text('{"id": 1, "text": "hello"}\n{"id": 2, "text": 5}\n')
    return path


def _same(args: list[str], stdin: bytes = b"", output=None) -> None:
    plain = omnitok(*args, stdin=stdin)
    written = output.read_bytes() if output is not None else None
    click = omnitok(*args, *CLICK, stdin=stdin)
    assert (plain.code, plain.out, plain.err) == (click.code, click.out, click.err)
    if output is not None:
        assert written == output.read_bytes() and written.count(b"\n") == 2


def test_stdin_count_is_tiktokens(ref_o200k):
    text = "hello world, caf\u00e9 \u6771\u4eac\n"
    r = omnitok("count", "-m", "gpt-4o", stdin=text.encode())
    assert (r.code, r.out) == (0, f"{len(ref_o200k.encode_ordinary(text))}\n".encode())


def test_plain_lines_answer_as_click_does(records, bad):
    _same(["count", "-m", "gpt-4o", "--summary", str(records)])
    _same(["count", str(records), "-q", "--model=gpt-4"])
    _same(["count", "--model", "gpt-4o", str(bad)])  # a bad record: exit 1, the same message
    _same(["count", "--text", "hello world", "--text", "caf\u00e9 \u6771", "-m", "gpt-4"])
    _same(["count", "--text", "-5 apples"])  # a value that looks like an option: click's reading


MORE = [
    (["count", "-m", "gpt-4o", "--format", "jsonl", "--engine", "tiktoken", "{records}"], b""),
    (["count", "--format=csv", "--field", "text", "--id-field=id", "--cache", "off", "{records}"], b""),
    (["count", "-f", "text,text", "{records}"], b""),  # a usage error (exit 2), the same message
    (["count", "-f", "text", "--field", "body", "{records}"], b""),
    (["count", "--format", "bogus", "{records}"], b""),
    (["count", "--engine", "bogus", "{records}"], b""),
    (["count", "--cache", "maybe", "--text", "x"], b""),
    (["count", "--online", "--strict", "--explain", "--no-cache", "-m", "gpt-4o", "{bad}"], b""),
    (["count", "--offline", "--lines", "--input-format", "text", "--add-field", "n"], b"a b\nc\n"),
    (["count", "--encoding", "cl100k_base", "--no-special-tokens", "--cache-dir", "none", "--text", "hi"], b""),
    (["count", "--l3-url", "redis://127.0.0.1:1/0", "--cache", "on", "--text", "hi", "-q"], b""),
]


@pytest.mark.parametrize(("args", "stdin"), MORE)
def test_plain_lines_with_more_options_answer_as_click_does(records, bad, args, stdin):
    from omnitok.cli.app import _plain_count

    args = [a.format(records=records, bad=bad) for a in args]
    assert _plain_count(args) is not None  # read without click
    _same(args, stdin=stdin)


def test_the_plain_tables_match_the_commands_declarations():
    """Each option the plain reading takes sets the parameter click would set, takes a value where
    click's does (a flag sets the value click's flag sets), and has no callback (a number's range
    check, which the plain reading would skip) but one that refuses only an empty value, which
    the plain reading leaves to click."""
    import typer.main

    from omnitok.cli import _options, app

    command = typer.main.get_command(app.app).commands["count"]
    by_opt = {o: p for p in command.params for o in (*p.opts, *p.secondary_opts)}
    for option, (name, value) in app._COUNT_FLAGS.items():
        p = by_opt[option]
        assert (p.name, p.is_flag, p.callback) == (name, True, None), option
        assert value is (option not in p.secondary_opts), option
    for option, name in app._COUNT_VALUES.items():
        p = by_opt[option]
        assert (p.name, p.is_flag, p.multiple) == (name, False, name in app._COUNT_LISTS), option
        # -j's range is checked by the reading itself
        assert getattr(p.callback, "__wrapped__", p.callback) in (None, _options.not_empty) or name == "jobs", option


def test_plain_lines_with_jobs_and_output(records, tmp_path):
    out = tmp_path / "out.jsonl"
    _same(["count", "-j", "2", "-o", str(out), str(records)], output=out)
    _same(["count", str(records), "--jobs=1", "--output", str(out), "--summary"], output=out)


def test_other_lines_go_to_click(records):
    r = omnitok("count", "-m")  # no value: click's usage error
    assert r.code == 2 and r.err.startswith("omnitok: error: ") and "-m" in r.err
    r = omnitok("count", "-m", "gpt-4o", "--summary", "--summary", str(records))  # click takes a repeated flag
    assert r.code == 0 and b'"records":2' in r.out
    for jobs in ("0", "01", "x"):  # click's reading of the value, and its usage error for 0
        r = omnitok("count", "-j", jobs, str(records))
        assert (r.code, r.out[:1]) == ((2, b"") if jobs != "01" else (0, b"{"))


def test_one_line_count_does_not_import_pydantic():
    r = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "omnitok", "count", "-m", "gpt-4o"],
        input=b"hello\n",
        capture_output=True,
        check=True,
    )
    assert r.stdout == b"2\n"
    imported = {line.rsplit("|", 1)[-1].strip() for line in r.stderr.decode().splitlines() if "|" in line}
    assert "omnitok.cli.count" in imported  # the measurement works: the count command's module ran
    assert not {name for name in imported if name.split(".")[0] in ("pydantic", "typer")}
