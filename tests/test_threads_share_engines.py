"""Two threads counting with one engine at once (the server's thread pool, a Python user's
threads): gigatoken's tokenizers borrow themselves mutably while they encode, so a second thread
once got RuntimeError('Already borrowed'). Each thread now counts with an instance of its own
(unicode_guard.Lent); the counts equal the reference library's."""

from __future__ import annotations

import threading

import pytest

import omnitok

from .hf_assets import TOKENIZERS

TEXT = "hello world, the quick brown fox jumps over the lazy dog. " * 4000


def _race(counters, text: str, rounds: int = 8) -> list:
    results, errors = [], []
    barrier = threading.Barrier(len(counters))

    def run(counter):
        barrier.wait()
        for _ in range(rounds):
            try:
                results.append([r.tokens for r in counter.count_batch([text, text[: len(text) // 2]])])
            except Exception as e:  # noqa: BLE001 - the test reports any
                errors.append(repr(e))
                return

    threads = [threading.Thread(target=run, args=(c,)) for c in counters]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    return results


def test_openai_counters_on_two_threads(ref_o200k):
    counters = [omnitok.Counter("gpt-4o", engine="gigatoken") for _ in range(2)]
    assert counters[0].strategy.engine == "gigatoken"
    want = [len(ref_o200k.encode_ordinary(TEXT)), len(ref_o200k.encode_ordinary(TEXT[: len(TEXT) // 2]))]
    assert {tuple(r) for r in _race(counters, TEXT)} == {tuple(want)}


@pytest.mark.parametrize("label", ["qwen2.5"])
def test_hugging_face_counters_on_two_threads(label):
    from tokenizers import Tokenizer

    path, _ = TOKENIZERS[label]
    counters = [omnitok.Counter(tokenizer=str(path), engine="gigatoken") for _ in range(2)]
    ref = Tokenizer.from_file(str(path / "tokenizer.json"))
    want = [len(ref.encode(t).ids) for t in (TEXT, TEXT[: len(TEXT) // 2])]  # Qwen adds no BOS
    assert {tuple(r) for r in _race(counters, TEXT)} == {tuple(want)}
