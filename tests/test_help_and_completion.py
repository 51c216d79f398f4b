"""Help and completion (issue 27, item 5), through the console script: Rich markup in help text is
shown literally (`[ray]`), every command's --help has examples, option values complete (-m from
the model registry, --format, --method, --metrics, ...), a positional that is no file and looks
like words says how to count text, and serve --help's curl example works against a real server."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess

import pytest

from tests.console import omnitok


def _commands():
    """Every command path of the app, with the help strings it was given (help, epilog, options)."""
    import typer.main

    from omnitok.cli.app import app

    out = []

    def walk(cmd, path):
        texts = [cmd.help or "", cmd.epilog or ""] + [getattr(p, "help", None) or "" for p in cmd.params]
        out.append((path, texts))
        for name, sub in sorted(getattr(cmd, "commands", {}).items()):
            walk(sub, [*path, name])

    walk(typer.main.get_command(app), [])
    return out


COMMANDS = _commands()
IDS = [" ".join(path) or "omnitok" for path, _ in COMMANDS]


def help_of(path: list[str]) -> str:
    r = omnitok(*path, "--help", env={"COLUMNS": "400", "NO_COLOR": "1", "TERM": "dumb"})
    assert r.code == 0, r.err
    return r.out.decode()


@pytest.mark.parametrize(("path", "texts"), COMMANDS, ids=IDS)
def test_help_shows_brackets_and_has_examples(path, texts):
    shown = help_of(path)
    for text in texts:
        for bracketed in re.findall(r"\[[^\[\]\n]*\]", text.replace("\\[", "[")):
            assert bracketed in shown, f"{bracketed!r} lost from `omnitok {' '.join(path)} --help`"
    assert re.search(r"^\s*Examples?:", shown, re.M), f"`omnitok {' '.join(path)} --help` shows no example"


def test_count_help_names_the_ray_extra():
    assert "pip install 'omnitok[ray]'" in help_of(["count"])


def complete(words: str) -> list[str]:
    """What bash completion offers for the last word of `words` (click's complete_bash protocol)."""
    env = {"_OMNITOK_COMPLETE": "complete_bash", "COMP_WORDS": words, "COMP_CWORD": str(len(words.split()) - 1)}
    r = omnitok(env=env)
    assert r.code == 0, r.err
    return r.out.decode().split()


def test_model_completion_is_the_registrys_ids():
    from omnitok import api

    ids = {m["model"] for f in api.model_families() for m in f["models"] if m["kind"] in ("id", "bedrock id")}
    assert complete("omnitok count -m gpt-4") == sorted(i for i in ids if i.startswith("gpt-4"))
    assert "gemini-2.5-flash" in complete("omnitok count --model gemini-2.5-f")
    assert complete("omnitok compress -m meta.llama3-1-8") == ["meta.llama3-1-8b-instruct"]
    assert "gpt-4o" in complete("omnitok models gpt-4")


def test_value_completion():
    from omnitok.io.writers import OUTPUT_FORMATS
    from omnitok.options import METHODS

    assert complete("omnitok count --format ''") == list(OUTPUT_FORMATS)
    assert complete("omnitok count --format c") == ["csv"]
    assert complete("omnitok count --input-format j") == ["jsonl", "json"]
    assert complete("omnitok compress --method ''") == ["auto", *METHODS]
    assert complete("omnitok compress --format t") == ["text"]
    assert complete("omnitok count --on-error s") == ["stop", "skip"]
    assert complete("omnitok encode --format j") == ["json"]
    assert complete("omnitok cache clear --tier l") == ["l1", "l2", "l3"]


def test_completion_lists_match_the_library():
    from omnitok.cli import _options as opt
    from omnitok.io.formats import FORMATS
    from omnitok.options import METRICS
    from omnitok.validation.report import FORMATS as REPORT_FORMATS

    assert opt.INPUT_FORMATS == FORMATS
    assert set(opt.METRICS) == set(METRICS)
    assert ("auto", *REPORT_FORMATS) == opt.REPORT_FORMATS
    assert opt.complete_list(opt.METRICS)("rouge-l,b") == ["rouge-l,bertscore", "rouge-l,bleu"]


@pytest.mark.parametrize(
    ("args", "first"),
    [
        (["hello", "world"], "hello"),
        (["hello world"], "hello world"),
        (["-m", "gpt-4o", "summarise", "this"], "summarise"),
    ],
)
def test_words_given_as_files(args, first):
    r = omnitok("count", *args)
    assert (r.code, r.out, r.err) == (1, b"", f"omnitok: error: {first}: no such file (to count text, use --text)\n")


def test_a_missing_file_name_keeps_its_message(tmp_path):
    r = omnitok("count", str(tmp_path / "missing.jsonl"))
    assert (r.code, r.err) == (1, f"omnitok: error: {tmp_path / 'missing.jsonl'}: no such file\n")


@pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl")
def test_serve_help_curl_example_works(tmp_path, ref_cl100k):
    # A real server (~3 s to start): the example is for a shell, against `omnitok serve`.
    pytest.importorskip("fastapi")
    from tests.serve_server import Server

    shown = help_of(["serve"]).splitlines()
    start = next(i for i, line in enumerate(shown) if line.strip().startswith("curl "))
    command = ""
    for line in shown[start:]:
        command += line.strip()
        if not command.endswith("\\"):
            break
        command = command[:-1] + " "
    assert "content-type: application/json" in command.lower()
    server = Server(tmp_path)
    try:
        argv = [a.replace("localhost:8001", server.url) for a in shlex.split(command)]
        p = subprocess.run(argv, capture_output=True, timeout=30, env={**os.environ, "NO_PROXY": "*"})
    finally:
        server.stop()
    assert p.returncode == 0
    body = json.loads(p.stdout)
    assert body["token_count"] == len(ref_cl100k.encode_ordinary("Hello, world!")), body  # gpt-4: cl100k_base


def test_version_and_dash_dash_version_agree():
    # Needs the cli/app.py edit (the helper's report): `omnitok version` printed "0.1.0".
    a, b = omnitok("--version"), omnitok("version")
    assert a.code == b.code == 0 and a.out == b.out and a.out.startswith(b"omnitok ")


def test_validate_value_completion():
    # Needs the cli/validate.py edit (the helper's report).
    assert complete("omnitok validate --metrics rouge-l,b") == ["rouge-l,bertscore", "rouge-l,bleu"]
    assert complete("omnitok validate --format j") == ["jsonl", "json", "junit"]
    assert complete("omnitok validate --fail-on m") == ["mean"]
