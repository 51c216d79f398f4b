"""ARCHITECTURE.md: the library never prints, and the command line writes to people through
cli/_output.py only (stdout results through io/output.py's stream, which turns a failed write into
one error line). A writer anywhere else is found here by reading the code (ast), so a new one
fails this test before it reaches a user."""

from __future__ import annotations

import ast
from pathlib import Path

import omnitok

PACKAGE = Path(omnitok.__file__).parent
# The two modules that write to the process's stdout and stderr.
WRITERS = {"cli/_output.py", "io/output.py"}


def _writers(tree: ast.AST) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            f = node.func
            name = f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else ""
            if (isinstance(f, ast.Name) and name in ("print", "pprint")) or name in ("echo", "secho"):  # typer/click
                found.append((node.lineno, name))
            elif name == "Console" and not any(k.arg == "file" for k in node.keywords):  # rich: stdout
                found.append((node.lineno, "Console() on stdout"))
        std = isinstance(node, ast.Attribute) and node.attr in ("stdout", "stderr", "__stdout__", "__stderr__")
        if std and isinstance(node.value, ast.Name) and node.value.id == "sys":
            found.append((node.lineno, f"sys.{node.attr}"))
    return found


def _uses(tree: ast.AST) -> set[int]:
    """Lines that only ask sys.stdout / sys.stderr whether they are a terminal (isatty), or flush."""
    ok = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr in ("isatty", "flush", "fileno"):
            v = node.value
            if isinstance(v, ast.Attribute) and isinstance(v.value, ast.Name) and v.value.id == "sys":
                ok.add(node.lineno)
    return ok


def test_only_the_output_modules_write_to_people():
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).as_posix()
        if rel in WRITERS:
            continue
        tree = ast.parse(path.read_text(), str(path))
        questions = _uses(tree)
        offenders += [f"{rel}:{line}: {what}" for line, what in _writers(tree) if line not in questions]
    assert offenders == [], "write through cli/_output.py (or return the data):\n" + "\n".join(offenders)
