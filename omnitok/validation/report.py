"""Validation reports: JSONL, JSON, a table, JUnit XML, GitHub Actions annotations, Markdown."""

from __future__ import annotations

import re

import orjson

from ..errors import printable
from ..io.ids import dumps

FORMATS = ("table", "jsonl", "json", "junit", "github", "markdown")


# What XML 1.0 forbids (its Char production): C0 controls but tab, LF and CR; lone surrogates;
# U+FFFE and U+FFFF. Written as their escapes (`\x00`, `\ud800`), as errors.printable writes them.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def _xml_text(text: str) -> str:
    return _NOT_XML.sub(lambda m: printable(m.group()), str(text))


# xml.sax.saxutils is imported where JUnit XML is written, not with this module: it imports
# urllib.request (ssl, email, http.client), ~25 ms of every `omnitok validate`'s start-up.


def escape(text: str) -> str:
    """Text for an XML element: escaped, and every character XML 1.0 forbids written as its escape."""
    from xml.sax.saxutils import escape as escape_xml

    return escape_xml(_xml_text(text))


def quoteattr(text: str) -> str:
    """A quoted XML attribute value, likewise (tab, LF and CR kept, as character references)."""
    from xml.sax.saxutils import quoteattr as quoteattr_xml

    return quoteattr_xml(_xml_text(text))


def _cell(value) -> str:
    """Text for one cell of a Markdown table, on one line: controls and newlines written as their
    escapes (errors.printable), backslashes and `|` escaped (GFM splits cells on unescaped `|`),
    and a leading `#` escaped."""
    text = printable(str(value)).replace("\\", "\\\\").replace("|", "\\|")
    return "\\" + text if text.lstrip().startswith("#") else text


def _github(text: str) -> str:
    """A GitHub workflow command's message: %, CR and LF encoded as the runner decodes them."""
    return str(text).replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _name(row: dict) -> str:
    return str(row.get("id", row["pos"]))


def _fmt(v) -> str:
    return f"{v:.4f}" if isinstance(v, float) else str(v)


def _problem(row: dict) -> str | None:
    """What is wrong with a row, for the reports that list only such rows: a bad record's error
    (the markdown and GitHub reports left those out: "7 pairs" over 6 rows, no ::error), or the
    thresholds a pair failed; None for a pair that passed."""
    if row.get("error"):
        return row["error"]
    return "; ".join(row.get("failures") or []) or None


def write(fmt: str, rows: list[dict], summary: dict, out) -> None:
    if fmt == "jsonl":
        for row in rows:
            out.write(dumps(row) + b"\n")
        out.write(dumps({"summary": summary}) + b"\n")
    elif fmt == "json":
        out.write(dumps({"records": rows, "summary": summary}, option=orjson.OPT_INDENT_2) + b"\n")
    elif fmt == "junit":
        out.write(junit(rows, summary).encode())
    elif fmt == "github":
        lines = [
            f"::error title=omnitok validate::{_github(row.get('where', _name(row)))}: {_github(problem)}"
            for row in rows
            if (problem := _problem(row))
        ]
        verdict = "passed" if summary["passed"] else "FAILED"
        lines.append(
            f"::notice title=omnitok validate::{summary['records']} pairs, gate {verdict} ({summary['fail_on']})"
        )
        out.write(("\n".join(lines) + "\n").encode())
    elif fmt == "markdown":
        out.write(markdown(rows, summary).encode())
    else:
        out.write(table(rows, summary).encode())


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
        # the worse end of each metric, as --fail-on p10 judges it: p10 and min of a score, p90
        # and max of the ratio (where lower is better)
        lines += ["| metric | mean | worse 10% | worst |", "|---|---:|---:|---:|"]
        for metric, a in agg.items():
            tail, worst = ("p90", "max") if "p90" in a else ("p10", "min")
            cells = (f"{metric} ({tail}, {worst})", _fmt(a["mean"]), _fmt(a[tail]), _fmt(a[worst]))
            lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
        lines.append("")
    failing = [(r, p) for r in rows if (p := _problem(r))]
    if failing:
        lines += ["| pair | failures |", "|---|---|"]
        lines += [f"| {_cell(_name(r))} | {_cell(p)} |" for r, p in failing[:50]]
        lines.append("")
    return "\n".join(lines) + "\n"


def table(rows: list[dict], summary: dict) -> str:
    """The rows as an aligned table for people (as wide as the terminal, else 80 columns), as text:
    the caller writes it where the report goes (stdout or -o), as every other format."""
    import io
    import shutil

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
    buf = io.StringIO()
    Console(file=buf, width=shutil.get_terminal_size().columns, color_system=None).print(t)
    return buf.getvalue()
