"""The README's Python examples are doctests: each ```python block is run, in order, in one
namespace (later blocks use `omnitok` from the first), in a scratch directory. A block that needs
what a test machine lacks (a Ray cluster, a bucket) says so on its first line ("# not run ...")
and names the test that runs its calls instead."""

from __future__ import annotations

import doctest
import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCK = re.compile(r"```python\n(.*?)```", re.S)


def test_every_python_example_is_a_doctest():
    blocks = BLOCK.findall(README.read_text(encoding="utf-8"))
    assert blocks, "no Python examples found in README.md"
    for block in blocks:
        head = block.lstrip()
        if head.startswith("# not run"):
            assert "tests/" in head.splitlines()[0], f"a block not run here must name the test that runs it:\n{block}"
            continue
        assert head.startswith(">>>"), f"a README Python block that is not a doctest:\n{block}"


def test_readme_examples_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    blocks = BLOCK.findall(README.read_text(encoding="utf-8"))
    text = "\n".join(b for b in blocks if not b.lstrip().startswith("# not run"))
    parser = doctest.DocTestParser()
    test = parser.get_doctest(text, {}, "README.md", str(README), 0)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.attempted > 5
    assert result.failed == 0
