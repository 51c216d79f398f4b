"""A long text is counted without the GIL where a caller waits on an event loop (omnitok serve,
omnitok.aio: omnitok.runtime turns it on): gigatoken's one-text encode holds the GIL for one long
piece (a run of one letter: 0.1-0.18 s a MB), and a 9 MB body of one letter held `omnitok
serve`'s event loop, /healthz included, ~1.4 s; its batch call gives the GIL up. The command line
keeps the one-text encode (the batch call imports awkward, ~0.3 s, at its first use)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from omnitok.tokenizers import unicode_guard
from omnitok.tokenizers.unicode_guard import RELEASED_CHARS, ReferenceGuarded


class Recorder:
    """A tokenizer whose encode and encode_batch say which was called."""

    def __init__(self):
        self.calls = []

    def encode(self, text):
        self.calls.append("encode")
        return [0] * 3

    def encode_batch(self, texts, parallel=None):
        self.calls.append(("encode_batch", parallel))
        import awkward

        return awkward.Array([[0] * 5 for _ in texts])


def test_a_long_text_takes_the_batch_call_once_released(monkeypatch):
    tok = Recorder()
    monkeypatch.setattr(unicode_guard, "_RELEASE", False)
    assert ReferenceGuarded._count_fast(tok.encode, "a" * (RELEASED_CHARS + 1)) == 3
    monkeypatch.setattr(unicode_guard, "_RELEASE", True)
    assert ReferenceGuarded._count_fast(tok.encode, "a" * RELEASED_CHARS) == 3
    assert ReferenceGuarded._count_fast(tok.encode, "a" * (RELEASED_CHARS + 1)) == 5
    assert tok.calls == ["encode", "encode", ("encode_batch", False)]


@pytest.mark.parametrize(
    "text",
    ["q" * 300_000, "hello world. " * 20_000, "a\ud800b " * 30_000, "\u6f22" * 100_000, " " * 200_000],
)
def test_the_released_count_is_the_same_count(monkeypatch, ref_o200k, text):
    import omnitok

    monkeypatch.setattr(unicode_guard, "_RELEASE", True)
    counter = omnitok.Counter("gpt-4o", engine="gigatoken")
    cleaned = text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    assert counter.count(text).tokens == len(ref_o200k.encode_ordinary(cleaned))


def test_the_runtime_turns_it_on_and_the_command_line_does_not():
    code = (
        "import sys, omnitok\n"
        "from omnitok.tokenizers import unicode_guard as g\n"
        "omnitok.Counter('gpt-4o', engine='gigatoken').count('a' * 70000)\n"
        "print(g._RELEASE, 'awkward' in sys.modules)\n"
        "import omnitok.runtime\n"
        "omnitok.runtime.Runtime()\n"
        "print(g._RELEASE)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False", "True"]
