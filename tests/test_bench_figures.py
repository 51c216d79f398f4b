"""One source of truth for performance figures (issue 26 item 5): every figure the README's
Performance section quotes comes from the last full `make bench`, benchmarks/RESULTS.md.

A figure is a decimal number (`113.5`, `0.40`, `4.36x`) or a whole number of megabytes
(`204 MB`); version numbers (`gigatoken 0.10`, `Llama 3.2`) are names, not figures. Each must
occur in RESULTS.md as the same number (not as part of a longer one)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "RESULTS.md"

# A number right after one of these words (and a space or a line break) is a version (gigatoken 0.10,
# Llama 3.2), not a figure.
_VERSION_OF = re.compile(r"(?:gigatoken|tiktoken|tokenizers|Python|Unicode|Llama|Qwen|Gemma|bert-score|PyTorch)\s$")
_FIGURE = re.compile(r"(?<![\w.+-])(?:(\d[\d,]*\.\d+)x?(?![\w.])|(\d[\d,]*) MB(?!/s)\b)")


def section(text: str, title: str) -> str:
    """The body of the `## title` section of a Markdown text (to the next `## ` heading)."""
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


def figures(text: str) -> list[str]:
    """The figures a text quotes, in order (see the module docstring)."""
    return [
        m.group(1) or m.group(2)
        for m in _FIGURE.finditer(text)
        if not _VERSION_OF.search(text, max(0, m.start() - 20), m.start())
    ]


def missing(figs: list[str], results: str) -> list[str]:
    """The figures that do not occur in `results` as that exact number."""
    return [f for f in dict.fromkeys(figs) if not re.search(rf"(?<![\d.,]){re.escape(f)}(?![\d]|\.\d)", results)]


def test_figures_are_read_as_figures():
    text = "gigatoken 0.10 and Llama\n3.2: 4.36x, 113.5 MB/s, 0.40 s, 204 MB, 100 MB of text, 59,859 records"
    assert figures(text) == ["4.36", "113.5", "0.40", "204", "100"]
    assert missing(["4.36", "13.5", "204"], "| 4.36x | 113.5 | 1204 MB |") == ["13.5", "204"]


def test_readme_performance_figures_come_from_results_md():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    figs = figures(section(readme, "Performance"))
    assert figs, "the README's Performance section quotes no figures"
    gone = missing(figs, RESULTS.read_text(encoding="utf-8"))
    assert not gone, (
        "figures in the README's Performance section that benchmarks/RESULTS.md (the last full "
        f"`make bench`) does not hold: {', '.join(gone)}"
    )


def test_readme_heuristic_table_is_the_last_make_bench_s():
    """The heuristic's table (README, "The heuristic") is the last full `make bench`'s heuristic
    step (benchmarks/calibrate.py --check): each row as RESULTS.md has it, and that run found the
    shipped constants (omnitok/data/heuristic.json) to be its fit."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    start = readme.index("| family | chars/token prose, code, CJK |")
    rows = readme[start:].split("\n\n", 1)[0].splitlines()
    results = RESULTS.read_text(encoding="utf-8").splitlines()
    assert len(rows) == 8 and [r for r in rows if r not in results] == []
    assert "The shipped constants (omnitok/data/heuristic.json): this fit." in results
