"""The shell commands the README shows (issue 27, item 5), run as a reader would paste them, as the
doctests run its Python: every ```sh block of the sections below, line by line in one bash per block
(so files a block writes are there for its later lines), in a temporary directory standing in for
/tmp, with this repository's `omnitok` on PATH. A line that runs omnitok (`omnitok ...`, or a pipe
into it) must exit as documented next to it (`exit N` in its comment, else 0) with no traceback,
and where the comment after it is the whole output (a number, ids, JSON objects with no `...`),
print that. Lines that need the network, a Ray cluster, a server or files the README does not
create are listed in SKIP with the reason."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from tests.console import OMNITOK

REPO = Path(__file__).resolve().parent.parent
README = (REPO / "README.md").read_text(encoding="utf-8")
SECTIONS = ("## Set-up", "## Quick start", "## `omnitok count`", "## `omnitok encode`, `decode`, `truncate`")

# A command's words that make it not runnable here, and why.
SKIP = {
    "long.txt": "reads long.txt, a file the README does not create",
    "make ": "the Makefile's targets, not omnitok",
}


def _section(title: str) -> str:
    start = README.index(title + "\n")
    end = README.find("\n## ", start + len(title))
    return README[start : end if end >= 0 else None]


def _blocks() -> list[tuple[str, int, list[tuple[int, str, list[str]]]]]:
    """(section, first line, [(line number, command, its comments)]) of each ```sh block."""
    out = []
    for title in SECTIONS:
        body = _section(title)
        offset = README.index(body)
        for m in re.finditer(r"```sh\n(.*?)```", body, re.S):
            first = README.count("\n", 0, offset + m.start(1)) + 1
            entries: list[tuple[int, str, list[str]]] = []
            pending = ""
            for i, line in enumerate(m.group(1).splitlines()):
                if pending:
                    line, pending = pending + line, ""
                if line.endswith("\\"):
                    pending = line[:-1]
                    continue
                if line.startswith("#") and entries:
                    entries[-1][2].append(line[1:].strip())
                elif line.strip():
                    command, comment = _split_comment(line)
                    entries.append((first + i, command, [comment] if comment else []))
            out.append((title, first, entries))
    return out


def _split_comment(line: str) -> tuple[str, str]:
    """A shell line and its trailing comment (a # outside quotes, after a space)."""
    quote = None
    for i, ch in enumerate(line):
        if quote:
            if ch == quote:
                quote = None
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and i > 0 and line[i - 1] == " ":
            return line[:i].rstrip(), line[i + 1 :].strip()
    return line, ""


def _runs_omnitok(command: str) -> bool:
    return bool(re.match(r"(\.venv/bin/)?omnitok ", command) or re.search(r"\|\s*(\.venv/bin/)?omnitok ", command))


def _expected_output(comments: list[str]) -> list | None:
    """The output a comment states whole, normalised by _normal: a bare number or ids, a JSON
    array, or JSON objects a line with no `...`; None where the comment only describes it."""
    if not comments or any("..." in c for c in comments):
        return None
    comments = [re.sub(r"\s{2,}\(.*\)$", "", c) for c in comments]  # "8   (3 per message ...)": a remark
    if all(c.startswith("{") for c in comments) or (len(comments) == 1 and re.fullmatch(r"[\w\[\], ]+", comments[0])):
        return _normal("\n".join(comments).encode(), comment=True)
    return None


def _normal(out: bytes, comment: bool = False) -> list:
    """Output as a list of lines, each a JSON value where it parses as one (so key order and
    spacing do not matter), the final newline aside (decode and truncate add none). In a comment,
    prose after a line's JSON value is a remark about it, not output."""
    lines = []
    for line in out.decode(errors="replace").splitlines():
        try:
            if comment and line.strip().startswith(("{", "[")):
                lines.append(json.JSONDecoder().raw_decode(line.strip())[0])
            else:
                lines.append(json.loads(line))
        except ValueError:
            lines.append(line.strip())
    return lines


BLOCKS = _blocks()


@pytest.mark.parametrize(("section", "first", "entries"), BLOCKS, ids=[f"README.md:{b[1]}" for b in BLOCKS])
def test_readme_sh_block(section, first, entries, tmp_path):
    env = {
        **os.environ,
        "PATH": os.pathsep.join([str(Path(OMNITOK).parent), os.environ["PATH"]]),
        "COLUMNS": "200",
    }
    env.pop("OMNITOK_MODEL", None)
    failures = []
    checked = 0
    for lineno, command, comments in entries:
        if command.startswith("alias ") or any(word in command for word in SKIP):
            continue
        command = command.replace("/tmp/", f"{tmp_path}/").replace(".venv/bin/omnitok", "omnitok")
        p = subprocess.run(["bash", "-c", command], cwd=tmp_path, env=env, capture_output=True, timeout=120)
        if not _runs_omnitok(command):
            assert p.returncode == 0, f"README.md:{lineno}: {command}: {p.stderr.decode()}"
            continue
        checked += 1
        err = p.stderr.decode(errors="replace")
        stated = re.search(r"\bexit (\d+)", " ".join(comments))
        want = int(stated.group(1)) if stated else 0
        out = p.stdout
        if stated and command.rstrip().endswith('echo "exit $?"'):
            got_exit = re.search(rb"exit (\d+)\n$", out)
            code = int(got_exit.group(1)) if got_exit else None
        else:
            code = p.returncode
        if code != want or "Traceback" in err:
            failures.append(f"README.md:{lineno}: `{command}` exit {code}, README says {want}: {err.strip()[:300]}")
            continue
        expected = _expected_output(comments)
        if expected is not None and _normal(out) != expected:
            failures.append(f"README.md:{lineno}: `{command}` printed {out!r}, README says {comments}")
    assert not failures, "\n".join(failures)
    assert checked or not any(_runs_omnitok(c) for _, c, _ in entries)
