"""The per-text path `omnitok serve` counts short texts on (issue 26): the Unicode guard answers
common texts without numpy's table (an ASCII test, the str's storage width, one regex search),
the engine instances are lent without a semaphore, and Counter.count_text counts one text
without count_batch's lists. Each gives exactly the answers of the slower path it replaces."""

from __future__ import annotations

import itertools
import json
import random
import threading
import time

import numpy as np
import pytest

import omnitok
from omnitok.tokenizers import unicode_guard
from omnitok.tokenizers.unicode_guard import ANY, OPENAI, Lent, needs_reference

from .conftest import reference_encoding


def _table(patterns: str) -> np.ndarray:
    """The guard's rule, made here from the data files: Unicode 14's unassigned code points, less
    (for OpenAI's patterns) the new symbols and the letters both engines know."""
    table = np.zeros(0x110000, dtype=np.bool_)
    for a, b in json.loads(unicode_guard.DATA.read_text())["ranges"]:
        table[a : b + 1] = True
    if patterns == OPENAI:
        for name in (unicode_guard.NEW_OTHERS, unicode_guard.KNOWN_LETTERS):
            for a, b in json.loads(name.read_text())["ranges"]:
                table[a : b + 1] = False
    return table


TABLES = {p: _table(p) for p in (ANY, OPENAI)}


def expected(text: str, patterns: str) -> bool:
    """The table's answer for the text the engines count: surrogates cleaned as tiktoken does."""
    text = text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return bool(TABLES[patterns][[ord(c) for c in text]].any()) if text else False


def _edges(table: np.ndarray) -> list[int]:
    cuts = np.flatnonzero(np.diff(table.astype(np.int8)))
    return sorted({int(c) + d for c in cuts for d in (0, 1)})


@pytest.mark.parametrize("patterns", [ANY, OPENAI])
def test_every_bmp_code_point_alone_and_after_latin1(patterns):
    table = TABLES[patterns]
    for cp in range(0x80, 0x10000):
        want = bool(table[cp])
        assert needs_reference(chr(cp), patterns) is want, hex(cp)
        assert needs_reference("caf\u00e9 " + chr(cp), patterns) is want, hex(cp)


@pytest.mark.parametrize("patterns", [ANY, OPENAI])
def test_astral_code_points(patterns):
    table = TABLES[patterns]
    points = list(range(0x10000, 0x110000, 97)) + [p for p in _edges(table) if p > 0xFFFF]
    for cp in points:
        assert needs_reference(chr(cp), patterns) is bool(table[cp]), hex(cp)
        assert needs_reference("\u6570\u636e" + chr(cp) + "\U0001f600", patterns) is bool(table[cp]), hex(cp)


@pytest.mark.parametrize("patterns", [ANY, OPENAI])
def test_random_texts_agree_with_the_table(patterns):
    rng = random.Random(26)
    edges = _edges(TABLES[patterns])
    pools = [
        lambda: rng.choice(edges),
        lambda: rng.randrange(0x80, 0x100),  # Latin-1
        lambda: rng.randrange(0x300, 0x370),  # combining marks
        lambda: rng.randrange(0xD800, 0xE000),  # lone surrogates
        lambda: rng.randrange(0x100, 0x10000),
        lambda: rng.randrange(0x1F300, 0x1FB00),  # emoji
        lambda: rng.randrange(0x10000, 0x110000),
        lambda: rng.randrange(0x20, 0x7F),
    ]
    for _ in range(6000):
        cps = [rng.choice(pools)() for _ in range(rng.randint(1, 12))]
        text = "".join(map(chr, cps))
        if rng.random() < 0.5:
            text = "a b " + text + " c"
        assert needs_reference(text, patterns) is expected(text, patterns), [hex(c) for c in cps]


@pytest.mark.parametrize("patterns", [ANY, OPENAI])
def test_many_astral_characters_then_one_guarded(patterns):
    """Past _ASTRAL_SEEN characters above U+FFFF the rest of the text goes to numpy's table."""
    guarded = next(p for p in _edges(TABLES[patterns]) if p > 0xFFFF and TABLES[patterns][p])
    safe = next(p for p in range(0x10000, 0x110000) if not TABLES[patterns][p])
    for n in (0, 1, unicode_guard._ASTRAL_SEEN - 1, unicode_guard._ASTRAL_SEEN, 200):
        text = "x" + chr(safe) * n
        assert needs_reference(text, patterns) is False
        assert needs_reference(text + chr(guarded), patterns) is True
        assert needs_reference(chr(guarded) + text, patterns) is True


@pytest.mark.parametrize("patterns", [ANY, OPENAI])
def test_the_guarded_ranges_and_the_guards_table_are_the_rule(patterns):
    """_guarded (read once a process, for the search and the table above U+FFFF) and numpy's table
    give exactly the code points of the rule made here from the data files."""
    ranges = unicode_guard._guarded(patterns)
    assert ranges == tuple(sorted(ranges))
    assert all(b < c for (_, b), (c, _) in itertools.pairwise(ranges))  # disjoint
    table = np.zeros(0x110000, dtype=np.bool_)
    for a, b in ranges:
        table[a : b + 1] = True
    assert np.array_equal(table, TABLES[patterns])
    assert np.array_equal(unicode_guard._table(patterns), TABLES[patterns])


@pytest.mark.parametrize(("model", "patterns"), [("gpt-4o", OPENAI), ("llama3.2", ANY)])
def test_warm_builds_the_guard_that_forked_workers_share(model, patterns):
    """The pipeline's warm-up (before it forks shard workers) builds the guard's search and tables
    for the engine's patterns: its own text is Latin-1, which the guard answers without them, and
    each worker (a fresh fork every few shards) built them again on its first other text. The
    counts after are the reference library's."""
    from tokenizers import Tokenizer

    from omnitok.tokenizers.hf import HFStrategy

    from .hf_assets import TOKENIZERS

    if model == "llama3.2":
        directory, model_id = TOKENIZERS[model]
        strategy = HFStrategy(model_id, directory)
        ref = Tokenizer.from_file(str(directory / "tokenizer.json"))

        def want(text):
            return len(ref.encode(text, add_special_tokens=False).ids)
    else:
        strategy = omnitok.Counter(model, cache="off", engine="gigatoken").strategy
        enc = reference_encoding("o200k_base")

        def want(text):
            return len(enc.encode_ordinary(text))

    assert strategy._engine._patterns == patterns
    built = (unicode_guard._search, unicode_guard._astral, unicode_guard._table)
    for cached in built:
        cached.cache_clear()
    strategy.warm()
    for cached in built:
        assert cached.cache_info().currsize == 1, cached.__name__
    texts = [t for t in TEXTS if "\ud800" not in t] + ["\U0001f600" * 40 + " \u0378"]
    assert strategy.count_batch(texts) == [want(t) for t in texts]


def test_common_texts_do_not_reach_the_table(monkeypatch):
    def no_table(text, patterns):
        raise AssertionError("numpy's table was consulted")

    monkeypatch.setattr(unicode_guard, "_in_table", no_table)
    for text in ("hello", "caf\u00e9 na\u00efve", "\u6570\u636e \u6771\u4eac", "emoji \U0001f600 \u6570", "\ud800x"):
        assert needs_reference(text, OPENAI) is False
    assert needs_reference("\u0378", ANY) is True


def test_a_str_subclass_is_looked_up_in_full():
    class Text(str):
        pass

    assert needs_reference(Text("caf\u00e9 \u0378"), ANY) is True
    assert needs_reference(Text("caf\u00e9"), ANY) is False
    assert needs_reference(Text("\U000323b0"), OPENAI) is True


TEXTS = [
    "",
    "hello world",
    "caf\u00e9 na\u00efve " * 40,
    "\u6570\u636e \u6771\u4eac \U0001f600 " * 30,
    "CJK J \U000323b0 is a letter to gigatoken",  # the reference engine counts it
    "lone \ud800 surrogate",
    "e\u0301\u0302 combining",
    "<|endoftext|> is plain text",
    "x" * 3000,
]


@pytest.mark.parametrize("model", ["gpt-4o", "gpt-4", "claude-sonnet-4-5"])
def test_count_text_equals_count_batch(model):
    counter = omnitok.Counter(model, cache="off")
    for text in TEXTS:
        assert counter.count_text(text) == counter.count_batch([text])[0], text[:40]


def test_count_text_gives_the_reference_librarys_counts(ref_o200k):
    counter = omnitok.Counter("gpt-4o", cache="off")
    for text in TEXTS:
        if "\ud800" in text:
            continue  # tiktoken cannot take a lone surrogate (omnitok counts it as U+FFFD)
        assert counter.count_text(text).tokens == len(ref_o200k.encode_ordinary(text)), text[:40]


def test_count_text_refuses_what_count_batch_refuses():
    counter = omnitok.Counter("gpt-4o", cache="off")
    for bad in (7, None, b"bytes"):
        with pytest.raises(TypeError) as one:
            counter.count_text(bad)
        with pytest.raises(TypeError) as batch:
            counter.count_batch([bad])
        assert str(one.value) == str(batch.value)


def test_sixteen_threads_count_exactly(ref_o200k):
    counter = omnitok.Counter("gpt-4o", cache="off", engine="gigatoken")
    rng = random.Random(5)
    words = ["the", "caf\u00e9", "\u6570\u636e", "\U0001f600", "token", "12345", " ", "\n"]
    texts = ["".join(rng.choice(words) for _ in range(rng.randint(1, 300))) for _ in range(64)]
    want = [len(ref_o200k.encode_ordinary(t)) for t in texts]
    errors, got = [], {}
    barrier = threading.Barrier(16)

    def run(k):
        barrier.wait()
        try:
            got[k] = [counter.count_text(t).tokens for t in texts] + [r.tokens for r in counter.count_batch(texts)]
        except Exception as e:  # noqa: BLE001 - the test reports any
            errors.append(repr(e))

    threads = [threading.Thread(target=run, args=(k,)) for k in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert all(got[k] == want + want for k in range(16))
    lent = counter.strategy._engine._encoders
    assert 1 <= lent._made <= lent._cap


def test_lent_gives_an_instance_to_one_thread_at_a_time_and_makes_at_most_cap():
    made, held, clashes = [], set(), []
    guard = threading.Lock()

    def build():
        if len(made) == 1:  # the second build fails once: its slot is not lost
            made.append(None)
            raise RuntimeError("no memory")
        made.append(object())
        return made[-1]

    lent = Lent(build, build(), cap=3)
    failures = []
    barrier = threading.Barrier(16)

    def run():
        barrier.wait()
        for _ in range(100):
            try:
                obj = lent.take()
            except RuntimeError:
                failures.append(1)
                continue
            with guard:
                if obj in held:
                    clashes.append(obj)
                held.add(obj)
            time.sleep(0.0002)  # held a while: the threads contend
            with guard:
                held.discard(obj)
            lent.give(obj)

    threads = [threading.Thread(target=run) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert clashes == []
    assert failures == [1]
    built = [m for m in made if m is not None]
    assert len(built) <= 3 and lent._made == len(built)
    assert sorted(map(id, lent._free)) == sorted(map(id, built))


def test_the_front_answers_before_fastapi_and_as_fastapi_does():
    """A plain /count-tokens request is answered in front of FastAPI's own __call__ (its
    per-request OpenTelemetry check); other requests, and every request while FastAPI's
    telemetry is on, go through the whole app, with the same answers."""
    pytest.importorskip("fastapi", reason="omnitok serve needs the serve extra")
    pytest.importorskip("httpx", reason="the test client is httpx")
    from fastapi.testclient import TestClient

    from omnitok.serve import ServeConfig, create_app

    app = create_app(ServeConfig())
    body = json.dumps({"text": "caf\u00e9 \u6570\u636e \U0001f600 hello", "model_id": "gpt-4o"})
    headers = {"content-type": "application/json"}
    with TestClient(app, base_url="http://127.0.0.1") as client:
        client.post("/count-tokens", content=body, headers=headers)  # loads the counter
        stack = app.middleware_stack
        reached = []

        async def spy(scope, receive, send):
            reached.append(scope["path"])
            await stack(scope, receive, send)

        app.middleware_stack = spy
        try:
            fast = client.post("/count-tokens", content=body, headers=headers)
            assert reached == []
            assert client.get("/healthz").status_code == 200 and reached == ["/healthz"]
            app._otel_on = True  # as when an OpenTelemetry provider is configured
            slow = client.post("/count-tokens", content=body, headers=headers)
            assert reached == ["/healthz", "/count-tokens"]
        finally:
            app.middleware_stack = stack
    assert fast.status_code == slow.status_code == 200
    assert fast.content == slow.content
    assert fast.json()["token_count"] == omnitok.count("caf\u00e9 \u6570\u636e \U0001f600 hello", model="gpt-4o").tokens


def test_a_surrogate_pair_is_checked_as_the_character_it_makes():
    """The engines count a text with surrogates cleaned as tiktoken cleans it (a pair becomes the
    character above U+FFFF it encodes): the guard checks that text, so U+323B0 (Unicode 17) made
    of a pair goes to the reference engine as it does when written whole."""
    paired, whole = "x\ud888\udfb0y", "x\U000323b0y"
    for patterns in (ANY, OPENAI):
        assert needs_reference(whole, patterns) and needs_reference(paired, patterns)
        assert not needs_reference("x\ud800y", patterns)  # a lone one: U+FFFD
    ref = reference_encoding("o200k_base")
    cleaned = paired.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    for engine in ("gigatoken", "tiktoken"):
        got = omnitok.count(paired, model="gpt-4o", engine=engine, cache="off").tokens
        assert got == len(ref.encode_ordinary(cleaned)), engine


def test_the_width_test_holds_when_a_latin1_literal_has_a_utf8_copy():
    """The guard's storage-width test is measured on a string of its own: a shared literal
    ("\\u00e9") that some C code has asked for UTF-8 (orjson here) is larger, and measured on it
    two-byte texts passed as Latin-1 and skipped the guard."""
    import subprocess
    import sys

    code = (
        "import orjson; orjson.dumps('\\u00e9')\n"
        "from omnitok.tokenizers.unicode_guard import needs_reference\n"
        "print(needs_reference('\\u0378x'), needs_reference('\\u00e9x'))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["True", "False"]
