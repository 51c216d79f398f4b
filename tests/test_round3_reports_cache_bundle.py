"""Issue 25, items 7 and 9, through the console script: validate reports that always parse (JUnit
XML without the characters XML 1.0 forbids, Markdown tables one line and the right cells per
record); cache commands that never make a missing --cache-dir; `bundle verify` refusing what use
would refuse; `bundle list` noticing files replaced since install."""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import tarfile
import xml.etree.ElementTree as ET
from pathlib import Path

import orjson
import pytest

from tests.console import omnitok

# --- item 7: reports --------------------------------------------------------------------------

NASTY_IDS = [
    "nul\x00byte",
    "bell\x07and\x1besc",
    "".join(chr(c) for c in range(0x20) if c not in (9, 10, 13)),
    "tab\tnl\ncr\rend",
    "nonchar\ufffe\uffff",
    "pipe|in|id",
    "line\nbreak",
    "## x",
    "# heading",
    "back\\|slash",
    "<tag attr='1'>&amp;</tag>",
    "]]>",
]


def pairs(tmp_path: Path) -> str:
    """One failing pair per nasty id (nothing shared), plus one that passes."""
    rows = [{"id": i, "original": "completely different words", "compressed": "nothing shared"} for i in NASTY_IDS]
    rows.append({"id": "fine", "original": "the cat sat", "compressed": "the cat sat"})
    p = tmp_path / "pairs.jsonl"
    p.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))
    return str(p)


def validate(tmp_path: Path, fmt: str):
    return omnitok("validate", pairs(tmp_path), "--min-rouge-l", "0.5", "--format", fmt)


def test_junit_with_control_characters_in_ids_parses(tmp_path):
    r = validate(tmp_path, "junit")
    assert r.code == 6 and "Traceback" not in r.err, r.err
    root = ET.fromstring(r.out)
    cases = root.find("testsuite").findall("testcase")
    assert len(cases) == len(NASTY_IDS) + 1
    names = [c.get("name") for c in cases]
    assert names[-1] == "fine"
    # every id still there, told apart: forbidden characters written as their escapes
    assert names[0] == "nul\\x00byte" and names[1] == "bell\\x07and\\x1besc"
    assert names[3] == "tab\tnl\ncr\rend"  # allowed characters kept (as character references)
    assert names[4] == "nonchar\\ufffe\\uffff"
    assert names[5:] == NASTY_IDS[5:] + ["fine"]
    assert len(set(names)) == len(names)
    assert sum(c.find("failure") is not None for c in cases) == len(NASTY_IDS)


def test_junit_report_file_parses(tmp_path):
    out = tmp_path / "report.xml"
    r = omnitok("validate", pairs(tmp_path), "--min-rouge-l", "0.5", "--format", "junit", "-o", str(out))
    assert r.code == 6, r.err
    assert ET.parse(out).getroot().get("failures") == str(len(NASTY_IDS))


def test_junit_lone_surrogates_and_error_messages():
    """Lone surrogates cannot come from JSON input (orjson refuses them), but the report writer
    takes any str: ids, messages and values all go through the same escaping."""
    from omnitok.validation.report import write

    rows = [
        {"pos": 0, "id": "lone\ud800sur\udfff", "failures": ["bad\x01msg"], "rouge_l_f1": 0.0, "where": "f:1\x02"},
        {"pos": 1, "id": "err\x00", "error": "broken \x1b[31m record\ufffe"},
    ]
    summary = {"records": 2, "passed": False, "fail_on": "any"}
    out = io.BytesIO()
    write("junit", rows, summary, out)
    cases = ET.fromstring(out.getvalue()).find("testsuite").findall("testcase")
    assert [c.get("name") for c in cases] == ["lone\\ud800sur\\udfff", "err\\x00"]
    assert cases[0].find("failure").get("message") == "bad\\x01msg"
    assert cases[1].find("error").get("message") == "broken \\x1b[31m record\\ufffe"


def _cells(line: str) -> list[str]:
    """GFM's split of a table row: on `|` not escaped by a backslash (an escaped backslash is one)."""
    assert line.startswith("|") and line.endswith("|"), line
    return [c.strip() for c in re.split(r"(?<!\\)((?:\\\\)*)\|", line[1:-1])[::2]]


def test_markdown_table_keeps_one_line_and_two_cells_per_record(tmp_path):
    r = validate(tmp_path, "markdown")
    assert r.code == 6 and "Traceback" not in r.err, r.err
    text = r.out.decode()
    lines = text.split("\n")
    head = lines.index("| pair | failures |")
    rows = lines[head + 2 : head + 2 + len(NASTY_IDS)]
    assert len(rows) == len(NASTY_IDS) and lines[head + 2 + len(NASTY_IDS)] == ""
    for row in rows:
        assert len(_cells(row)) == 2, row
        assert all(ord(c) >= 0x20 for c in row), repr(row)
    assert not any(line.startswith("#") for line in lines[1:]), "a heading made from an id"
    assert _cells(rows[5])[0] == "pipe\\|in\\|id"
    assert _cells(rows[6])[0] == "line\\\\nbreak"  # the escape \n, its backslash escaped for Markdown
    assert _cells(rows[7])[0] == "\\## x"


def test_github_annotations_one_line_per_failure(tmp_path):
    r = validate(tmp_path, "github")
    lines = r.out.decode().splitlines()
    assert len(lines) == len(NASTY_IDS) + 1 and all(x.startswith("::") for x in lines)


# --- item 9: cache commands on a missing --cache-dir ----------------------------------------------


@pytest.mark.parametrize(
    "args", [("stats",), ("stats", "--json"), ("clear", "--yes"), ("clear", "--tier", "l2", "--yes"), ("verify",)]
)
def test_cache_commands_on_a_missing_dir_exit_1_and_create_nothing(tmp_path, args):
    missing = tmp_path / "nonexistent" / "dir"
    extra = ("-m", "gpt-4o") if args[0] == "verify" else ()
    r = omnitok("cache", *args, *extra, "--cache-dir", str(missing), env={"OMNITOK_HOME": str(tmp_path / "home")})
    assert r.code == 1, (r.code, r.err)
    assert r.err.startswith("omnitok: error: cache ") and "no such directory" in r.err and str(missing) in r.err
    assert len(r.err.strip().splitlines()) == 1 and "Traceback" not in r.err
    assert not (tmp_path / "nonexistent").exists()


def test_cache_command_on_a_file_as_dir(tmp_path):
    f = tmp_path / "afile"
    f.write_text("x")
    r = omnitok("cache", "stats", "--cache-dir", str(f))
    assert r.code == 1 and "not a directory" in r.err and f.read_text() == "x"


def test_cache_stats_on_an_existing_dir_still_works(tmp_path):
    d = tmp_path / "cache"
    d.mkdir()
    r = omnitok("cache", "stats", "--json", "--cache-dir", str(d))
    assert r.code == 0, r.err
    assert orjson.loads(r.out)["l2_size"] == 0


# --- item 9: bundles ------------------------------------------------------------------------------


def _entry(path: str, data: bytes) -> dict:
    from blake3 import blake3

    return {
        "path": path,
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "blake3": blake3(data).hexdigest(),
        "source": f"test:{path}",
        "revision": None,
        "license": "MIT",
    }


def _bundle(path: Path, name: str, files: dict[str, bytes]) -> str:
    """A well-formed bundle whose manifest's hashes agree with its files."""
    manifest = {
        "format": "omnitok-bundle",
        "format_version": 1,
        "omnitok_version": "test",
        "name": name,
        "models": {},
        "hf_revisions": {},
        "files": [_entry(p, d) for p, d in sorted(files.items())],
    }
    with tarfile.open(path, "w:gz", format=tarfile.PAX_FORMAT) as tar:
        for member, body in [("manifest.json", json.dumps(manifest).encode())] + [
            ("files/" + p, d) for p, d in sorted(files.items())
        ]:
            ti = tarfile.TarInfo(member)
            ti.size = len(body)
            tar.addfile(ti, io.BytesIO(body))
    return str(path)


def _env(tmp_path: Path) -> dict:
    return {
        "OMNITOK_HOME": str(tmp_path / "home"),
        "HF_HOME": str(tmp_path / "hf"),
        "TIKTOKEN_CACHE_DIR": str(tmp_path / "tk"),
    }


@pytest.mark.parametrize(
    "rel", ["tiktoken/o200k_base.tiktoken", "tiktoken/cl100k_base.tiktoken", "tiktoken/r50k_base.tiktoken"]
)
def test_verify_refuses_a_rank_file_that_is_not_tiktokens(tmp_path, rel):
    from omnitok.tokenizers.openai_encodings import ENCODINGS

    pinned = {f"tiktoken/{s.file}.tiktoken": s.sha256 for s in ENCODINGS.values()}[rel]
    b = _bundle(tmp_path / "b.tar.gz", "forged", {rel: b"YQ== 0\n"})  # manifest agrees with the changed file
    r = omnitok("bundle", "verify", b, env=_env(tmp_path))
    assert r.code == 1, (r.code, r.out, r.err)
    out = orjson.loads(r.out)
    assert out["ok"] is False and len(out["problems"]) == 1
    assert "not the pinned sha256" in out["problems"][0] and pinned in out["problems"][0]
    r = omnitok("bundle", "install", b, env=_env(tmp_path))
    assert r.code == 1 and "not the pinned sha256" in r.err and len(r.err.strip().splitlines()) == 1
    assert not (tmp_path / "home" / "assets" / rel).exists()


def test_verify_accepts_unpinned_files_and_the_real_rank_file(tmp_path):
    from omnitok.assets.store import EMBEDDED_DIR

    files = {"tiktoken/mine.tiktoken": b"YQ== 0\n"}
    real = EMBEDDED_DIR / "openai" / "o200k_base.tiktoken"
    if real.is_file():
        files["tiktoken/o200k_base.tiktoken"] = real.read_bytes()
    b = _bundle(tmp_path / "ok.tar.gz", "fine", files)
    r = omnitok("bundle", "verify", b, env=_env(tmp_path))
    assert r.code == 0 and orjson.loads(r.out)["ok"] is True, r.out


def test_list_notices_files_replaced_since_install(tmp_path):
    env = _env(tmp_path)
    first = _bundle(tmp_path / "a.tar.gz", "first", {"tiktoken/shared.tiktoken": b"one", "gemini/a.model": b"a"})
    second = _bundle(tmp_path / "b.tar.gz", "second", {"tiktoken/shared.tiktoken": b"two"})
    assert omnitok("bundle", "install", first, env=env).code == 0
    rows = [orjson.loads(x) for x in omnitok("bundle", "list", env=env).out.splitlines()]
    assert [(x["name"], x["intact"]) for x in rows] == [("first", True)]
    r = omnitok("bundle", "install", second, env=env)
    assert r.code == 0, r.err
    r = omnitok("bundle", "list", env=env)
    assert r.code == 0 and "Traceback" not in r.err
    rows = {x["name"]: x for x in map(orjson.loads, r.out.splitlines())}
    assert rows["second"]["intact"] is True and "replaced" not in rows["second"]
    assert rows["first"]["intact"] is False and rows["first"]["replaced"] == ["tiktoken/shared.tiktoken"]
    assert "omnitok: warning: bundle 'first': 1 of its files changed since it was installed" in r.err
    os.unlink(tmp_path / "home" / "assets" / "gemini" / "a.model")  # removed by hand
    rows = {x["name"]: x for x in map(orjson.loads, omnitok("bundle", "list", env=env).out.splitlines())}
    assert rows["first"]["replaced"] == ["gemini/a.model", "tiktoken/shared.tiktoken"]
