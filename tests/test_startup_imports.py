"""Start-up of a plain count (issue 26 item 2): `echo hello | omnitok count -m gpt-4o` imports only
what it uses. The command line is read without click (cli.app._plain_count) and the Typer app
(cli/commands.py, every other command) is not imported, so typer, click and rich stay out, and
so do the libraries of paths the run does not take (pyarrow, awkward, pydantic; orjson where no
JSON is written). An input of at most 64 KiB is counted by pybpe (cli/_small.py), so none of tiktoken,
gigatoken and numpy is imported; a larger one by gigatoken, whose encode hands back a numpy array,
so its first count imports numpy (its batch calls import awkward and pyarrow besides, so the count
calls encode).

Each case runs the installed console script in a fresh interpreter (runpy, so that sys.modules
can be read after the run) and checks its answer and what it imported; no timing is asserted."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.console import OMNITOK

HEAVY = {"typer", "click", "rich", "pydantic", "pyarrow", "awkward", "pandas", "tiktoken", "transformers"}

# sys.modules read at exit, by an atexit function registered before the run (so run last): the
# console script ends its process itself once its atexit functions ran (cli/app.py's _leave).
_RUN = """
import atexit, json, os, runpy, sys
sys.argv = sys.argv[1:]  # the console script, then its arguments

def record():
    with open(os.environ["_STARTUP_MODULES"], "w") as f:
        json.dump({"modules": sorted(sys.modules), "blas": os.environ.get("OPENBLAS_NUM_THREADS")}, f)

atexit.register(record)
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def _run(tmp_path, *args: str, stdin: bytes = b"hello\n", env: dict | None = None) -> dict:
    """Run `omnitok ARGS` (the console script) in a fresh interpreter: its exit code, stdout, the
    modules in sys.modules after the run with their top-level packages, OPENBLAS_NUM_THREADS."""
    record = tmp_path / "modules.json"
    base = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"}
    r = subprocess.run(
        [sys.executable, "-c", _RUN, OMNITOK, *args],
        input=stdin,
        capture_output=True,
        env={**base, **(env or {}), "_STARTUP_MODULES": str(record)},
        timeout=120,
    )
    assert r.stderr == b"", r.stderr.decode(errors="replace")
    seen = json.loads(record.read_text())
    seen["code"] = r.returncode
    seen["packages"] = {*seen["modules"], *(name.split(".")[0] for name in seen["modules"])}
    return {**seen, "out": r.stdout}


def _imported(tmp_path, *args: str, stdin: bytes = b"hello\n") -> tuple[int, bytes, set[str]]:
    seen = _run(tmp_path, *args, stdin=stdin)
    return seen["code"], seen["out"], seen["packages"]


def test_a_one_line_count_imports_no_cli_framework_nor_unused_libraries(tmp_path):
    code, out, packages = _imported(tmp_path, "count", "-m", "gpt-4o")
    assert (code, out) == (0, b"2\n")
    assert packages & (HEAVY | {"orjson"}) == set()
    assert "omnitok.cli.commands" not in packages  # nor the other commands
    # the measurement works: it saw the engine load (a small ASCII input: pybpe, which needs only
    # the `regex` module: no tiktoken, gigatoken or numpy)
    assert {"regex", "omnitok.tokenizers.pybpe"} <= packages and not packages & {"tiktoken", "gigatoken", "numpy"}


@pytest.mark.parametrize(
    "args",
    [
        ("count", "--text", "hello", "-m", "gpt-4o", "--summary"),
        ("count", "-m", "gpt-4o", "-q", "--jobs", "1", "{records}", "-o", "{out}"),
    ],
)
def test_other_plain_counts_leave_typer_out_too(tmp_path, args):
    records = tmp_path / "in.jsonl"
    records.write_text('{"id": 1, "text": "hello"}\n{"id": 2, "text": "world"}\n')
    args = tuple(a.format(records=records, out=tmp_path / "out.jsonl") for a in args)
    code, out, packages = _imported(tmp_path, *args, stdin=b"")
    assert code == 0 and (b'"total_tokens":1' in out if "--summary" in args else out == b"")
    assert packages & HEAVY == set()


def test_a_line_click_reads_builds_the_typer_app(tmp_path):
    """The check can tell: a line the plain reading does not take goes through typer."""
    code, out, packages = _imported(tmp_path, "count", "-m", "gpt-4o", "--on-error", "stop")
    assert (code, out) == (0, b"2\n")
    assert "typer" in packages


def test_a_count_loads_openblas_with_one_thread_unless_the_user_says(tmp_path):
    """numpy comes with the engine; a count does no linear algebra, so OpenBLAS starts no thread
    per core (a user's own OPENBLAS_NUM_THREADS stays)."""
    assert _run(tmp_path, "count", "-m", "gpt-4o")["blas"] == "1"
    assert _run(tmp_path, "count", "-m", "gpt-4o", env={"OPENBLAS_NUM_THREADS": "3"})["blas"] == "3"


def test_every_count_parameter_has_a_plain_default():
    """The plain reading takes the command's defaults from its signature without typer: each is a
    value (typer's Annotated form), none a typer.Option object."""
    import inspect

    from omnitok.cli.count import count

    defaults = [p.default for p in inspect.signature(count).parameters.values()]
    assert all(d is None or type(d) in (str, bool, int, float) for d in defaults), defaults


@pytest.mark.parametrize(
    ("args", "stdin", "out"),
    [
        (("encode", "-m", "gpt-4o", "hello world"), b"", b"24912 2375\n"),
        (("decode", "-m", "gpt-4o", "24912", "2375"), b"", b"hello world"),
        (("truncate", "-m", "gpt-4o", "-t", "1", "hello world"), b"", b"hello"),
        (("compress", "-m", "gpt-4o", "--method", "bm25", "--budget", "50"), b"hello world\n", None),
        (
            ("validate", "--metrics", "compression", "--original", "hello world", "--compressed", "hello"),
            b"",
            b'{"pos":0,"where":"--original/--compressed","original_tokens":2,"compressed_tokens":1,"ratio":0.5,',
        ),
    ],
    ids=["encode", "decode", "truncate", "compress", "validate"],
)
def test_small_inputs_of_other_commands_load_pybpe_not_an_engine(tmp_path, args, stdin, out):
    """count's rule for a small input of an OpenAI model (cli/_small.py: pybpe builds no engine,
    the same ids) holds for encode, truncate, compress and validate's compression metric; decode
    uses pybpe whatever its input (a dict lookup an id)."""
    seen = _run(tmp_path, *args, stdin=stdin)
    assert seen["code"] in (0, None), seen
    assert out is None or seen["out"][: len(out)] == out
    assert "omnitok.tokenizers.pybpe" in seen["packages"]
    assert not seen["packages"] & {"tiktoken", "gigatoken"}
    big = tmp_path / "big.txt"  # past 64 KiB: gigatoken, as count
    big.write_text("hello world " * 6000)
    if args[0] in ("encode", "truncate"):
        seen = _run(tmp_path, *args[:-1], stdin=big.read_bytes())
    elif args[0] == "compress":
        seen = _run(tmp_path, *args, str(big))
    else:
        return
    assert seen["code"] in (0, None) and "gigatoken" in seen["packages"]


def test_validate_imports_the_xml_writer_only_for_junit(tmp_path):
    """xml.sax.saxutils imports urllib.request (ssl, email, http.client): ~25 ms of a validate's
    start-up, taken only where JUnit XML is written."""
    pair = ("validate", "--original", "a cat sat", "--compressed", "a cat sat", "--format", "jsonl")
    seen = _run(tmp_path, *pair, stdin=b"")
    assert seen["code"] == 0 and b'"passed":true' in seen["out"] and "xml.sax.saxutils" not in seen["packages"]
    seen = _run(tmp_path, *pair[:-1], "junit", stdin=b"")
    assert seen["code"] == 0 and b"<testsuite" in seen["out"] and "xml.sax.saxutils" in seen["packages"]
