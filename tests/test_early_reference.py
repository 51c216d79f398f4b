"""omnitok.tokenizers.early_reference: a large count's reference engine loaded in a process of its
own before the fast engine loads, then used by the pipeline for the texts the shard workers leave
for it: the same bytes out as without it, the process always reaped, a failure of it never a
wrong count or a hang."""

from __future__ import annotations

import os
import random

import pytest

from omnitok import api, pipeline
from omnitok.errors import WorkerLostError
from omnitok.io import shards
from omnitok.tokenizers import early_reference as early
from omnitok.tokenizers.engines import TiktokenEngine
from omnitok.tokenizers.openai_encodings import ENCODINGS
from omnitok.tokenizers.tiktoken_strategy import find_tiktoken_file, load_strategy

NEW_LETTER = "\U000323b0"  # CJK Extension J (Unicode 17): gigatoken and tiktoken split it apart
TEXTS = [f"a{NEW_LETTER}b c", f"{NEW_LETTER * 3} 123 x", f"lone \ud800 surrogate {NEW_LETTER}"]


def _o200k():
    spec = ENCODINGS["o200k_base"]
    return TiktokenEngine(spec, find_tiktoken_file(spec.file, spec.url, spec.sha256)[0])


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_the_process_counts_as_the_reference_does_and_is_reaped():
    ref = early.EarlyReference(_o200k)
    (worker,) = ref._pool._workers
    try:
        expected = _o200k().count_batch(TEXTS)
        assert ref.count(TEXTS) == expected
        assert ref.count(TEXTS[:1]) == expected[:1]
    finally:
        ref.close()
    ref.close()  # twice: nothing more
    assert not _alive(worker.pid)
    with pytest.raises(RuntimeError):
        ref.count(TEXTS)


def test_count_only_drops_the_rank_dict_and_keeps_every_count_and_decode():
    """TiktokenEngine.count_only (what the reference's process calls after its load): tiktoken
    keeps the rank dict only to pickle the Encoding; every count, encode and decode is the same."""
    texts = [*TEXTS, "hello world", "naïve café 12345 \n\n  x", ""]
    engine = _o200k()
    counts, ids = engine.count_batch(texts), [engine.encode(t) for t in texts]
    engine.count_only()
    assert engine._enc._mergeable_ranks == {}
    assert engine.count_batch(texts) == counts and [engine.encode(t) for t in texts] == ids
    assert engine.decode(ids[3]) == texts[3] and engine.vocab_size == _o200k().vocab_size


def test_the_process_sheds_and_trims_after_its_load_before_its_first_count(monkeypatch):
    """early_reference._load: the engine's count_only (where it has one), then the heap's trim,
    both before the process takes a text; an engine without count_only loads as before."""
    import signal

    calls = []

    class Engine:
        def count_only(self):
            calls.append("count_only")

        def count_batch(self, texts):
            return [len(t) for t in texts]

    monkeypatch.setattr(early, "release_free_memory", lambda: calls.append("trim"))
    handler = signal.getsignal(signal.SIGINT)
    try:
        early._load(Engine)
        assert calls == ["count_only", "trim"] and early._count(["ab", "c"]) == [2, 1]
        calls.clear()
        early._load(lambda: object())
        assert calls == ["trim"]
    finally:
        signal.signal(signal.SIGINT, handler)
        early._ENGINE = None


def _broken():
    raise RuntimeError("no reference here")


def test_a_reference_that_cannot_load_is_an_error_at_once_not_a_hang():
    ref = early.EarlyReference(_broken)
    try:
        with pytest.raises(WorkerLostError):
            ref.count(TEXTS)
    finally:
        ref.close()


def test_started_starts_one_process_and_closes_it_at_its_end():
    assert early.start(_o200k) is None  # outside a block: nothing
    with early.started():
        ref = early.start(_o200k)
        assert ref is not None and early.start(_o200k) is None  # one a block
        (worker,) = ref._pool._workers
    assert not _alive(worker.pid)
    with early.started(enabled=False):
        assert early.start(_o200k) is None


def test_api_asks_for_it_only_for_a_large_input_over_two_cores_or_more(tmp_path, monkeypatch):
    big = tmp_path / "big.jsonl"
    big.write_bytes(b'{"text": "x"}\n' * 100)
    monkeypatch.setattr(early, "MIN_BYTES", 1000)
    for paths, jobs, on in (
        ([str(big)], None, True),
        ([str(big)], 2, True),
        ([str(big)], 1, False),
        ([str(tmp_path / "missing.jsonl"), "-"], None, False),
        ([str(big)[:-6] + ".none", str(big)], 4, True),
    ):
        with api.early_reference(paths, jobs):
            assert early._ON is on, (paths, jobs)
            early.settle(None)
            assert early._ON is False
        assert early._ON is False and early._MINE is None
    monkeypatch.setattr("omnitok.cpu.cores", lambda: 1)
    with api.early_reference([str(big)], None):
        assert early._ON is False


def test_settle_closes_a_process_the_strategy_will_not_use():
    class Using:
        def __init__(self):
            self.ref = None

        def early_reference(self):
            return self.ref

    early.settle(None)  # outside a block: nothing
    for strategy in (Using(), object(), None):
        with early.started():
            ref = early.start(_o200k)
            if isinstance(strategy, Using):
                strategy.ref = ref
            early.settle(strategy)
            assert early._ON is False and early.start(_o200k) is None  # no more after settle()
            assert ref.open is isinstance(strategy, Using)
        assert not ref.open


def test_a_counter_made_in_the_block_keeps_only_what_its_strategy_uses():
    """A Claude estimate over o200k (a strategy over another engine: no early_reference) closes
    the process its engine started; an OpenAI model's keeps it until the block's end."""
    for model, kept in (("claude-sonnet-4-5", False), ("gpt-4o", True)):
        load_strategy.cache_clear()
        with early.started():
            counter = api.Counter(model, options=api.CountOptions(engine="gigatoken"))
            assert [ref.open for ref in early._STARTED] == [kept], model
            if kept:
                assert counter.strategy.early_reference() is early._STARTED[0]
        assert early._STARTED == []


WORDS = ["alpha", "βήτα", "日本語", "😀", "x" * 40, "naïve", NEW_LETTER, "\ud800"]


@pytest.fixture
def small_shards(monkeypatch):
    monkeypatch.setattr(shards, "SHARD_MIN", 512)
    monkeypatch.setattr(shards, "SHARD_MAX", 2048)
    monkeypatch.setattr(pipeline, "AUTO_MIN_BYTES", 4096)
    monkeypatch.setattr(pipeline, "SHARD_WORKER_TASKS", 16)
    monkeypatch.setattr(pipeline, "idle_jobs", lambda: 2)


@pytest.mark.parametrize("model", ["gpt-4o", "gpt-4"])
def test_a_count_with_it_writes_the_same_bytes_and_uses_it(cli, tmp_path, monkeypatch, small_shards, pools, model):
    import json

    rng = random.Random(model)
    lines = []
    for i in range(400):
        text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(0, 20)))
        lines.append(json.dumps({"id": i, "text": text}).encode() if rng.random() > 0.02 else b'{"text": broken')
    path = tmp_path / "c.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    args = ("count", "-m", model, "--engine", "gigatoken", "--on-error", "record", str(path))
    without = cli(*args, "-j", "1")
    assert without.code in (0, 4) and without.out.count(b"\n") == 400

    asked: list[int] = []
    real_count = early.EarlyReference.count
    monkeypatch.setattr(
        early.EarlyReference, "count", lambda self, texts: asked.append(len(texts)) or real_count(self, texts)
    )
    forked_own: list[bool] = []
    real_fork = pipeline._Reference.fork
    monkeypatch.setattr(pipeline._Reference, "fork", lambda self: forked_own.append(True) or real_fork(self))
    first_load: list[int] = []  # processes started early when the fast engine first loads
    from omnitok.tokenizers.engines import GigatokenEngine

    real_encoder = GigatokenEngine._encoder
    monkeypatch.setattr(
        GigatokenEngine, "_encoder", lambda self: first_load.append(len(early._STARTED)) or real_encoder(self)
    )

    monkeypatch.setattr(early, "MIN_BYTES", 1)
    load_strategy.cache_clear()  # a strategy loaded by the run above would not load its engine again
    with_it = cli(*args, "-j", "2")
    assert with_it == without
    assert pools == [2]
    assert first_load[0] == 1  # the reference's process was there before the fast engine loaded
    assert sum(asked) > 0  # the texts the workers left were counted there
    assert early._STARTED == [] and early._ON is False  # closed with the run

    asked.clear()
    monkeypatch.setattr(early, "MIN_BYTES", 1 << 40)  # below it: the reference loads when needed, as before
    assert cli(*args, "-j", "2") == without
    assert asked == []


def test_a_reference_process_that_dies_leaves_the_count_to_this_process(cli, tmp_path, monkeypatch, small_shards):
    """Killed under the run (the OOM killer), the early process's texts are counted here: the same
    bytes, no error."""
    import json

    path = tmp_path / "c.jsonl"
    path.write_bytes(
        b"".join(json.dumps({"text": f"{w} {NEW_LETTER} {i}"}).encode() + b"\n" for i, w in enumerate(WORDS * 40))
    )
    args = ("count", "-m", "gpt-4o", "--engine", "gigatoken", str(path))
    without = cli(*args, "-j", "1")
    monkeypatch.setattr(early, "MIN_BYTES", 1)
    real_count = early.EarlyReference.count

    def killed(self, texts):
        for w in self._pool._workers:
            os.kill(w.pid, 9)
        return real_count(self, texts)

    monkeypatch.setattr(early.EarlyReference, "count", killed)
    load_strategy.cache_clear()
    assert cli(*args, "-j", "2") == without
