"""Counting by shards (io.shards + pipeline._count_shards): the same bytes out for every --jobs
value, on random corpora with errors, blank lines, CRLF, a BOM, chat records, non-ASCII and
several files, from files, stdin and .gz; shards made small so every input has many."""

from __future__ import annotations

import gzip
import random
import threading
import time

import orjson
import pytest

from omnitok import pipeline
from omnitok.io import shards


@pytest.fixture(autouse=True)
def small_shards(monkeypatch):
    monkeypatch.setattr(shards, "SHARD_MIN", 512)
    monkeypatch.setattr(shards, "SHARD_MAX", 2048)
    monkeypatch.setattr(pipeline, "AUTO_MIN_BYTES", 4096)
    # Shards 2000x smaller than a run's, so a worker is replaced after 16 of them, not 4: still
    # several replacements a run (tests/test_count_path_recycle.py checks replacement itself), a
    # quarter of the forks (each copies the test process, which may hold gigabytes).
    monkeypatch.setattr(pipeline, "SHARD_WORKER_TASKS", 16)
    monkeypatch.setattr(pipeline, "idle_jobs", lambda: 2)  # auto, whatever else this machine runs


WORDS = ["alpha", "βήτα", "gamma", "日本語", "😀", "<|endoftext|>", "x" * 40, "naïve", "\U000323b0"]


def corpus(rng: random.Random, n: int) -> bytes:
    lines = []
    for i in range(n):
        kind = rng.random()
        text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(0, 30)))
        if kind < 0.05:
            line = b'{"text": "unterminated'
        elif kind < 0.1:
            line = b""
        elif kind < 0.13:
            line = b"   "
        elif kind < 0.16:
            line = orjson.dumps({"body": text})  # no text field: an extraction error
        elif kind < 0.25:
            line = orjson.dumps({"messages": [{"role": "user", "content": text}], "id": i})
        elif kind < 0.28:
            line = b"\xff\xfe not utf-8"
        elif kind < 0.36:  # near the plain record's fast path (InputStream.jsonl_lines with plain), not on it
            line = rng.choice(
                [
                    orjson.dumps(text),  # a bare string
                    orjson.dumps({"text": 5, "id": i}),
                    orjson.dumps({"text": text, "messages": [{"role": "user", "content": "hi"}]}),
                    orjson.dumps([text]),
                    orjson.dumps({"text": None}),
                ]
            )
        elif kind < 0.42:  # plain, with ids of every kind (only strings and integers are kept)
            line = orjson.dumps({"id": rng.choice([True, 7, 2.5, None, {"a": 1}, "x"]), "text": text, "n": 1})
        else:
            line = orjson.dumps({"text": text, "id": f"r{i}"})
        lines.append(line + (b"\r\n" if rng.random() < 0.2 else b"\n"))
    data = b"".join(lines)
    if rng.random() < 0.5:
        data = b"\xef\xbb\xbf" + data
    if rng.random() < 0.3:
        data = data.rstrip(b"\n")  # no newline at the end
    return data


@pytest.mark.parametrize("seed", range(4))
def test_every_jobs_value_writes_the_same_bytes(cli, tmp_path, seed, pools):
    rng = random.Random(seed)
    paths = []
    for k in range(3):
        p = tmp_path / f"part{k}.jsonl"
        p.write_bytes(corpus(rng, rng.randint(0, 120) if k == 1 else 150))
        paths.append(str(p))
    gz = tmp_path / "part3.jsonl.gz"
    gz.write_bytes(gzip.compress(corpus(rng, 100)))
    paths.append(str(gz))
    runs = {}
    for jobs in ("1", "2", "3"):
        r = cli("count", "--on-error", "record", "-j", jobs, *paths)
        runs[jobs] = (r.code, r.out, r.err)
    r = cli("count", "--on-error", "record", *paths)  # auto
    runs["auto"] = (r.code, r.out, r.err)
    assert runs["1"][0] in (0, 4)
    assert pools == [2, 3, 2]  # -j 2, -j 3 and auto (2 idle cores) went through shard workers
    assert runs["1"][1].count(b"\n") > 300
    for jobs, run in runs.items():
        assert run == runs["1"], jobs


@pytest.mark.parametrize("label", ["qwen2.5", "llama3.2"])
def test_hf_models_write_the_same_bytes_for_every_jobs_value(cli, tmp_path, label, pools):
    """A Hugging Face tokenizer.json (gigatoken; Llama adds <|begin_of_text|> to every text: the
    framing's overhead) counts alike in-process and in shard workers."""
    from .hf_assets import TOKENIZERS

    directory, model_id = TOKENIZERS[label]
    path = tmp_path / "c.jsonl"
    data = corpus(random.Random(label), 200)
    if label == "llama3.2":  # its files here have no chat template: a chat would stop the run
        data = b"".join(line for line in data.splitlines(keepends=True) if b'"messages"' not in line)
    path.write_bytes(data)
    runs = {
        jobs: cli("count", "-m", model_id, "--tokenizer", str(directory), "--on-error", "record", "-j", jobs, str(path))
        for jobs in ("1", "2")
    }
    assert pools == [2]
    assert runs["1"].out.count(b"\n") > 150
    assert runs["1"] == runs["2"]


@pytest.fixture(scope="module")
def summaries():
    """`count --summary` at -j 1 and at -j 2 of the same files, by file names: the command lines
    are the same in every parametrization of a test (its files written once a module), so they
    run once a module (each pair a shard pool, and its workers' forks), not once a test."""
    runs = {}

    def get(cli, *paths: str):
        if paths not in runs:
            args = ("count", "--on-error", "skip", "--summary", "--format", "json")
            runs[paths] = tuple(cli(*args, "-j", jobs, *paths) for jobs in ("1", "2"))
        return runs[paths]

    return get


@pytest.fixture(scope="module")
def corpus_400(tmp_path_factory):
    p = tmp_path_factory.mktemp("formats") / "c.jsonl"
    p.write_bytes(corpus(random.Random(7), 400))
    return p


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "number", "table"])
def test_formats_and_summary_agree(cli, corpus_400, fmt, summaries):
    p = corpus_400
    one = cli("count", "--on-error", "record", "--format", fmt, "-j", "1", str(p))
    two = cli("count", "--on-error", "record", "--format", fmt, "-j", "2", str(p))
    assert (one.code, one.out, one.err) == (two.code, two.out, two.err)
    one, two = summaries(cli, str(p))
    assert one.out == two.out and orjson.loads(one.out)["records"] > 300


@pytest.fixture(scope="module")
def three_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("several")
    paths = []
    for k in range(3):
        p = d / f"f{k}.jsonl"
        p.write_bytes(corpus(random.Random(20 + k), 200))
        paths.append(str(p))
    return paths


@pytest.mark.parametrize("fmt", ["jsonl", "number", "json"])
def test_limit_offenders_and_summary_over_several_files_agree(cli, three_files, fmt, pools, summaries):
    # Workers send plain results back as columns (records.CountedRun): the offenders' file:line,
    # the totals and percentiles, and every row must still be what one job gives.
    paths = three_files
    args = ("count", "--on-error", "record", "--max-tokens", "60", "--format", fmt)
    one = cli(*args, "-j", "1", *paths)
    two = cli(*args, "-j", "2", *paths)
    assert pools == [2]
    assert one.code == 4 and (one.code, one.out, one.err) == (two.code, two.out, two.err)
    assert "records are over --max-tokens 60" in one.err and "f0.jsonl:" in one.err
    one, two = summaries(cli, *paths)
    assert one.out == two.out and orjson.loads(one.out)["total_tokens"] > 1000


def test_stdin_and_add_field(cli, tmp_path):
    data = corpus(random.Random(3), 300)
    one = cli("count", "--on-error", "record", "--add-field", "n", "-j", "1", stdin=data)
    two = cli("count", "--on-error", "record", "--add-field", "n", "-j", "2", stdin=data)
    assert (one.code, one.out, one.err) == (two.code, two.out, two.err)
    assert one.out.count(b"\n") > 200


def test_stop_at_the_first_bad_record_in_input_order(cli, tmp_path):
    p = tmp_path / "c.jsonl"
    good = b"".join(orjson.dumps({"text": f"record {i}"}) + b"\n" for i in range(2000))
    p.write_bytes(good + b"{bad\n" + good)
    one = cli("count", "-j", "1", str(p))
    two = cli("count", "-j", "2", str(p))
    assert one.code == two.code == 1
    assert one.out == two.out and one.out.count(b"\n") == 2000
    assert one.err == two.err and f"{p}:2001: invalid JSON" in one.err


def test_truncated_gzip_is_reported_at_the_same_line(cli, tmp_path):
    # 1500 records (100 KB): the cut leaves ~1000 lines (70 KB), ~35 shards of a stream's 2 KB.
    body = b"".join(orjson.dumps({"text": f"record {i} " * 5}) + b"\n" for i in range(1500))
    z = gzip.compress(body)
    p = tmp_path / "cut.jsonl.gz"
    p.write_bytes(z[: len(z) * 2 // 3])
    one = cli("count", "--on-error", "record", "-j", "1", str(p))
    two = cli("count", "--on-error", "record", "-j", "2", str(p))
    assert (one.code, one.out) == (two.code, two.out)
    assert b"cannot read past line" in one.out


def test_parquet_row_groups_in_workers(cli, tmp_path, pools):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = random.Random(11)
    rows = [{"text": " ".join(rng.choice(WORDS) for _ in range(rng.randint(0, 20))), "id": i} for i in range(700)]
    rows[5]["text"] = None  # a null: an extraction error
    p = tmp_path / "t.parquet"
    pq.write_table(pa.Table.from_pylist(rows), p, row_group_size=100)
    data = bytearray(p.read_bytes())  # damage the fourth row group
    col = pq.ParquetFile(p).metadata.row_group(3).column(0)
    data[col.data_page_offset : col.data_page_offset + 30] = b"\xff" * 30
    p.write_bytes(bytes(data))
    one = cli("count", "--on-error", "record", "-j", "1", str(p), str(p))
    two = cli("count", "--on-error", "record", "-j", "2", str(p), str(p))
    assert pools == [2]
    assert (one.code, one.out, one.err) == (two.code, two.out, two.err)
    got = one.jsonl()
    assert len(got) == 1400 and sum("error" in g for g in got) == 2 * 101
    assert [g["line"] for g in got[:700]] == list(range(1, 701))


def test_validate_jobs_give_the_same_report(cli, tmp_path, monkeypatch):
    monkeypatch.setattr(pipeline, "default_jobs", lambda: 2)
    rng = random.Random(5)
    lines = []
    for i in range(1500):  # three chunks of ordered_map: the workers run
        words = [rng.choice(WORDS) for _ in range(rng.randint(1, 40))]
        rec = {"original": " ".join(words), "compressed": " ".join(words[::2]), "id": i}
        if i % 97 == 0:
            rec.pop("compressed")  # an error record
        lines.append(orjson.dumps(rec))
    p = tmp_path / "pairs.jsonl"
    p.write_bytes(b"\n".join(lines) + b"\n")
    args = ["validate", str(p), "--metrics", "rouge-l,compression", "--on-error", "record", "--min-rouge-l", "0.5"]
    one = cli(*args, "-j", "1")
    two = cli(*args, "-j", "2")
    auto = cli(*args)
    assert one.code in (4, 6)
    assert (one.code, one.out, one.err) == (two.code, two.out, two.err) == (auto.code, auto.out, auto.err)
    assert one.out.count(b"\n") == 1501


@pytest.mark.parametrize(
    ("cores", "busy", "jobs"), [(2, 0.1, 2), (2, 0.7, 1), (2, 3.0, 1), (16, 4.2, 12), (16, 0.0, 16)]
)
def test_auto_takes_the_idle_cores(monkeypatch, cores, busy, jobs):
    from omnitok import cpu

    monkeypatch.undo()  # the real idle_jobs
    monkeypatch.setattr(cpu, "cores", lambda: cores)
    monkeypatch.setattr(cpu, "others_busy", lambda: busy)
    assert pipeline.idle_jobs() == jobs


def test_compress_jobs_give_the_same_rows(cli, tmp_path, monkeypatch):
    rng = random.Random(9)
    lines = []
    for i in range(40):
        paras = ["\n".join(" ".join(rng.choice(WORDS) for _ in range(12)) + "." for _ in range(4)) for _ in range(5)]
        lines.append(orjson.dumps({"id": i, "query": rng.choice(WORDS), "context": "\n\n".join(paras)}))
    lines.insert(7, b'{"id": "bad", "query": 5, "context": "x"}')  # an error row, in its place
    p = tmp_path / "ctx.jsonl"
    p.write_bytes(b"\n".join(lines) + b"\n")
    maps = []
    real = pipeline.ordered_map

    def counting(fn, items, jobs=None, chunk=512):
        maps.append(jobs)
        return real(fn, items, jobs, chunk)

    monkeypatch.setattr(pipeline, "ordered_map", counting)
    args = ["compress", str(p), "--method", "bm25", "--ratio", "0.3", "--on-error", "record", "-q"]
    one = cli(*args, "-j", "1")
    two = cli(*args, "-j", "2")
    assert maps == [2]  # -j 1 stays in this process; -j 2 forks (BM25, no cache: fork-safe)
    assert (one.code, one.out, one.err) == (two.code, two.out, two.err)
    rows = one.jsonl()
    assert len(rows) == 41 and "error" in rows[7] and rows[8]["id"] == 7


def test_workers_fork_with_the_parents_objects_frozen_and_it_is_undone(tmp_path, monkeypatch):
    # fork_pool freezes this process's objects out of the collector while a pool runs (workers'
    # collections skip what they inherited); close_pool gives them back, whatever the run did.
    import gc

    seen = []
    real = pipeline.fork_pool

    def watching(jobs, init, *more):
        pool = real(jobs, init, *more)
        seen.append(gc.get_freeze_count())
        return pool

    monkeypatch.setattr(pipeline, "fork_pool", watching)
    p = tmp_path / "c.jsonl"
    p.write_bytes(corpus(random.Random(5), 300))
    from omnitok import api

    before = gc.get_freeze_count()
    rows = list(api.count_files([str(p)], "gpt-4o", jobs=2))
    assert len(rows) > 250 and seen and seen[0] > before
    assert gc.get_freeze_count() == before


class _Strategy:
    """A strategy whose reference engine is a separate load: records which process loaded it."""

    def __init__(self, tmp_path, fail=False):
        self.log = tmp_path / "loads"
        self.fail = fail
        self.loaded = False

    def defers(self):
        return not self.loaded

    def prepare_for_fork(self):
        import os

        with open(self.log, "a") as f:
            f.write(f"{os.getpid()}\n")
        if self.fail:
            raise RuntimeError("no reference here")
        self.loaded = True

    def count_batch(self, texts):
        self.prepare_for_fork()
        return [len(t) for t in texts]


def test_the_reference_is_loaded_in_its_own_process_as_soon_as_a_worker_reports(tmp_path):
    """pipeline._Reference: forked with the workers when the strategy may leave texts for a
    reference; the pool's callback asks it to load at once (once, never waiting); the merge's
    counts come from it; a strategy with nothing to load gets no process."""
    import os

    strategy = _Strategy(tmp_path)
    ref = pipeline._Reference(strategy)
    ref.fork()
    try:
        ref.early((10, [], False))
        ref.early((10, [], True))
        ref.early((10, [], True))  # asked once
        assert ref.count(["abc", "de"]) == [3, 2]
        assert ref.count(["x"]) == [1]
    finally:
        ref.close()
    pids = strategy.log.read_text().split()
    assert len(set(pids)) == 1 and pids[0] != str(os.getpid())  # loaded there, not here
    assert not ref._proc.is_alive()
    strategy.loaded = True  # nothing to load: no process, counts taken here
    idle = pipeline._Reference(strategy)
    idle.fork()
    assert idle._proc is None
    assert idle.count(["abcd"]) == [4]
    idle.close()


def test_a_failing_reference_process_leaves_the_count_and_its_error_here(tmp_path):
    strategy = _Strategy(tmp_path, fail=True)
    ref = pipeline._Reference(strategy)
    ref.fork()
    try:
        ref.early((10, [], True))
        with pytest.raises(RuntimeError, match="no reference here"):
            ref.count(["abc"])  # the process failed; here it fails again, with its message
    finally:
        ref.close()


def test_the_reference_loads_once_from_many_threads():
    from omnitok.tokenizers.unicode_guard import ReferenceGuarded

    made = []

    class Engine(ReferenceGuarded):
        def _reference_factory(self):
            made.append(1)
            time.sleep(0.05)
            return object()

    engine = Engine()
    threads = [threading.Thread(target=engine.prepare_for_fork) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert made == [1]


def test_cluster_shards_read_alone_through_a_given_filesystem(tmp_path):
    """A cluster's plan (io.shards: one Shard type, plain data both ways) over a pyarrow filesystem
    given as a parameter (paths inside it, as an object store's client takes them), each shard
    read alone, gives the serial reader's records, lines, ids and errors: JSONL byte ranges (a BOM,
    blank and bad lines), runs of Parquet row groups, and a .json document read whole."""
    import json

    import pyarrow as pa
    import pyarrow.fs as pafs
    import pyarrow.parquet as pq

    from omnitok.io.readers import InputStream
    from omnitok.records import Extractor

    rng = random.Random(11)
    d = tmp_path / "data"
    d.mkdir()
    lines = [b"", b"{bad", b'"a string"'] + [
        orjson.dumps(
            {"id": i, "text": " ".join(rng.choice(["ab", "cd", "é", "中"]) for _ in range(rng.randint(0, 30)))}
        )
        for i in range(300)
    ]
    rng.shuffle(lines)
    (d / "a.jsonl").write_bytes(b"\xef\xbb\xbf" + b"\n".join(lines) + b"\n")
    rows = [{"id": f"p{i}", "text": None if i % 17 == 3 else f"row {i} " * (i % 9)} for i in range(200)]
    pq.write_table(pa.Table.from_pylist(rows), d / "b.parquet", row_group_size=30)
    (d / "c.json").write_text(json.dumps([{"id": 1, "text": "one"}, {"id": 2, "text": 3}, {"id": 3, "text": "x"}]))
    fs = pafs.SubTreeFileSystem(str(tmp_path), pafs.LocalFileSystem())
    ex = Extractor(None, None, "id")
    plan = shards.plan_shards(shards.list_inputs(["data"], fs=fs), None, "id", 400, fs)
    assert [shards.Shard.from_dict(json.loads(json.dumps(s.to_dict()))) for s in plan] == plan
    assert sum(s.fmt == "jsonl" for s in plan) > 5 and sum(s.fmt == "parquet" for s in plan) > 1
    todo = shards.ranges_to_count(plan)
    shards.number_lines(plan, {i: shards.newlines(plan[i].path, plan[i].start, plan[i].end, fs) for i in todo})
    got = [(r.source, r.line, r.id, r.texts, r.error) for s in plan for r in shards.shard_records(s, ex, fs)]
    want = []
    for name in ("a.jsonl", "b.parquet", "c.json"):
        for r in InputStream([str(d / name)], ex):
            want.append((f"data/{name}", r.line, r.id, r.texts, r.error))
    assert got == want and any(e for *_, e in got)
