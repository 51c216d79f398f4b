"""Validation reports: JSONL, JSON, a table, JUnit XML, GitHub Actions annotations, Markdown."""

from __future__ import annotations

import sys
from xml.sax.saxutils import escape, quoteattr

import orjson

from ..errors import printable

FORMATS = ("table", "jsonl", "json", "junit", "github", "markdown")


def _name(row: dict) -> str:
    return str(row.get("id", row["pos"]))


def _fmt(v) -> str:
    return f"{v:.4f}" if isinstance(v, float) else str(v)


def write(fmt: str, rows: list[dict], summary: dict, out) -> None:
    if fmt == "jsonl":
        for row in rows:
            out.write(orjson.dumps(row) + b"\n")
        out.write(orjson.dumps({"summary": summary}) + b"\n")
    elif fmt == "json":
        out.write(orjson.dumps({"records": rows, "summary": summary}, option=orjson.OPT_INDENT_2) + b"\n")
    elif fmt == "junit":
        out.write(junit(rows, summary).encode())
    elif fmt == "github":
        lines = [
            f"::error title=omnitok validate::{row.get('where', _name(row))}: {'; '.join(row['failures'])}"
            for row in rows
            if row.get("failures")
        ]
        verdict = "passed" if summary["passed"] else "FAILED"
        lines.append(
            f"::notice title=omnitok validate::{summary['records']} pairs, gate {verdict} ({summary['fail_on']})"
        )
        out.write(("\n".join(lines) + "\n").encode())
    elif fmt == "markdown":
        out.write(markdown(rows, summary).encode())
    else:
        table(rows, summary)


def junit(rows: list[dict], summary: dict) -> str:
    fails = sum(1 for r in rows if r.get("failures"))
    errors = sum(1 for r in rows if r.get("error"))
    parts = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        f'<testsuites name="omnitok validate" tests="{len(rows)}" failures="{fails}" errors="{errors}">',
        f'  <testsuite name="omnitok validate" tests="{len(rows)}" failures="{fails}" errors="{errors}" skipped="0">',
    ]
    for row in rows:
        parts.append(f'    <testcase classname="omnitok.validate" name={quoteattr(_name(row))} time="0">')
        if row.get("error"):
            parts.append(f'      <error message={quoteattr(row["error"])} type="input"/>')
        elif row.get("failures"):
            msg = "; ".join(row["failures"])
            detail = escape(", ".join(f"{k}={_fmt(v)}" for k, v in row.items() if k not in ("failures", "passed")))
            parts.append(f'      <failure message={quoteattr(msg)} type="threshold">{detail}</failure>')
        parts.append("    </testcase>")
    parts += ["  </testsuite>", "</testsuites>", ""]
    return "\n".join(parts)


def markdown(rows: list[dict], summary: dict) -> str:
    verdict = "passed" if summary["passed"] else "**failed**"
    lines = [
        f"### omnitok validate: {verdict}",
        "",
        f"{summary['records']} pairs, gate `--fail-on {summary['fail_on']}`.",
        "",
    ]
    agg = summary.get("aggregate", {})
    if agg:
        lines += ["| metric | mean | p10 | min |", "|---|---:|---:|---:|"]
        for metric, a in agg.items():
            lines.append(f"| {metric} | {_fmt(a['mean'])} | {_fmt(a['p10'])} | {_fmt(a['min'])} |")
        lines.append("")
    failing = [r for r in rows if r.get("failures")]
    if failing:
        lines += ["| pair | failures |", "|---|---|"]
        lines += [f"| {_name(r)} | {'; '.join(r['failures'])} |" for r in failing[:50]]
        lines.append("")
    return "\n".join(lines) + "\n"


def table(rows: list[dict], summary: dict) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    keys = [k for k in (rows[0] if rows else {}) if k not in ("pos", "failures", "passed", "where")]
    t = Table(title=f"omnitok validate: {'passed' if summary['passed'] else 'FAILED'}")
    t.add_column("pair")
    for k in keys:
        t.add_column(k, justify="right")
    t.add_column("failures")
    for row in rows:  # as text, never rich markup; ids escaped (errors.printable)
        cells = (_name(row), *(_fmt(row.get(k, "")) for k in keys), "; ".join(row.get("failures", [])))
        t.add_row(*(Text(printable(c)) for c in cells))
    Console(file=sys.stdout).print(t)
