"""Commands stay thin over the library (issue 24): every function of omnitok/cli has a body of at
most 60 lines (its docstring aside); what a command does beyond parsing options and printing
belongs in the library (the run driver, omnitok.run), where every front end shares it."""

from __future__ import annotations

import ast
from pathlib import Path

import omnitok

CLI = Path(omnitok.__file__).parent / "cli"
LIMIT = 60


def test_every_command_body_is_at_most_60_lines():
    long = []
    for path in sorted(CLI.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                body = node.body
                if len(body) > 1 and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                    body = body[1:]
                lines = node.end_lineno - body[0].lineno + 1
                if lines > LIMIT:
                    long.append(f"{path.name}:{node.lineno} {node.name}: {lines} lines")
    assert long == []
