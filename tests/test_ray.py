"""omnitok on Ray: the same results as the local pipeline, from a real local Ray.

One Ray a test process (tests/conftest.py's ray_cluster: 2 CPUs, a 300 MB object store), started
with the workers' environment air-gapped: an empty OMNITOK_HOME, an empty Hugging Face cache,
HF_HUB_OFFLINE=1 and no config. The OpenAI encodings are embedded, so they need nothing; a Hugging
Face tokenizer reaches the workers only as a bundle (tests/test_ray_runs.py). Actors take half a
CPU each, so that reads are never starved. The two Ray files run on one xdist
worker and that one Ray (tests/conftest.py: pytest_xdist_make_scheduler).
"""

from __future__ import annotations

import json
import os
import random

import pytest

from omnitok import engine_core
from omnitok.io import parts
from omnitok.io import shards as sharding
from tests.ray_corpus import ACTORS, CPUS, MODEL, SHARD_BYTES, WORDS, RayOptions, needs_ray, oray, ray
from tests.ray_corpus import local as _local
from tests.ray_corpus import text as _text
from tests.ray_corpus import totals as _totals
from tests.ray_corpus import written as _written

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # Ray Data's own, on first use


def test_engine_core_alone_equals_local_pipeline(ray_data):
    """Without Ray: the shards of the inputs, line numbers from the counted line ends, each shard
    read and counted by the core, give count_files' rows; and a table gives its rows' counts."""
    parquet = sorted((ray_data / "pq").iterdir())
    paths = [str(p) for p in [*parquet, ray_data / "chats.jsonl"]]
    shards = sharding.plan_shards(sharding.list_inputs(paths), None, "id", 3000)
    todo = sharding.ranges_to_count(shards)
    sharding.number_lines(shards, {i: sharding.newlines(shards[i].path, shards[i].start, shards[i].end) for i in todo})
    core = engine_core.build(engine_core.Spec("count", MODEL))
    tables = [core.records(sharding.shard_records(s, core.extractor())) for s in shards]
    got = [(r["source"], r["line"], r["id"], r["tokens"], r["error"]) for t in tables for r in t.to_pylist()]
    assert got == _local(paths) and len(todo) > 10
    import pyarrow.parquet as pq

    table = pq.read_table(parquet[0])
    rows = core.table(table).to_pylist()
    assert [(r["id"], r["tokens"], r["error"]) for r in rows] == [(r[2], r[3], r[4]) for r in _local(parquet[:1])]
    # Through the run driver (run.count): its outcome, and the engine that counted on every row.
    assert core.outcome.records == len(rows) and core.outcome.errors == sum(r["error"] is not None for r in rows) > 0
    assert {r["engine"] for r in rows if r["error"] is None} == {core.meta["engine"]} and core.meta["engine"]
    spec = engine_core.Spec("count", MODEL, {"engine": "tiktoken"}, ("text",), "id")
    assert engine_core.Spec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec  # plain data


@needs_ray
def test_ray_options_are_checked_once_with_the_command_lines_messages():
    from omnitok.errors import UsageError

    with pytest.raises(
        UsageError, match=r"^--ray-workers must be a whole number from 1 to 9223372036854775807, not 0$"
    ):
        RayOptions(concurrency=0)
    with pytest.raises(UsageError, match=r"^shard_bytes must be a whole number from 1 to 9223372036854775807, not 0$"):
        RayOptions(shard_bytes=0)
    with pytest.raises(UsageError, match=r"^num_cpus must be a finite number at least 0, not nan$"):
        RayOptions(num_cpus=float("nan"))
    with pytest.raises(UsageError, match="bundles must be a list"):
        RayOptions(bundles="x.tar.gz")
    with pytest.raises(TypeError):
        RayOptions(0.5)  # keyword-only: no positional mix-up of address and num_cpus
    ro = RayOptions(bundles=["a.tar.gz"])
    assert ro.bundles == ("a.tar.gz",) and ro.ray_init() == {"log_to_driver": False, "logging_level": "error"}
    assert RayOptions(verbose=True, init={"num_cpus": 2}).ray_init() == {"num_cpus": 2}
    with pytest.raises(TypeError, match="ray_options must be a RayOptions"):
        oray.count(None, MODEL, ray_options={"num_cpus": 1})


def test_spec_must_be_plain_data():
    from omnitok.errors import UsageError

    with pytest.raises(UsageError, match="plain data"):
        engine_core.Spec("compress", MODEL, {}, params={"budget": object()})
    # An option of the wrong type is refused where the options object is made, naming the field.
    with pytest.raises(TypeError, match="tokenizer"):
        engine_core.Spec("count", MODEL, {"tokenizer": object()})


@needs_ray
def test_count_paths_equals_local_pipeline(ray_cluster, ray_data, tmp_path):
    parquet = sorted((ray_data / "pq").iterdir())
    paths = [*parquet, ray_data / "chats.jsonl"]
    out = tmp_path / "out"
    # Small shards: several runs of row groups per Parquet file (3), byte ranges of the JSONL file (13).
    r = oray.count_paths(
        [str(p) for p in paths],
        str(out),
        MODEL,
        ray_options=RayOptions(num_cpus=CPUS, concurrency=ACTORS, shard_bytes=SHARD_BYTES),
    )
    local = _local(paths)
    got = _written(out)
    assert got == local  # counts, errors and their messages, sources, lines: in input order
    s = r.summary
    records, errors, tokens = _totals(local)
    assert (s["records"], s["errors"], s["total_tokens"]) == (records, errors, tokens)
    assert s["counted"] == records - errors and s["exact"] is True and s["strategy"] == "tiktoken"
    # The parts, then the Hadoop/Spark completion marker; no _temporary left.
    parts = [f"part-{i:05d}.parquet" for i in range(s["shards"])]
    assert s["shards"] > len(paths) and sorted(os.listdir(out)) == ["_SUCCESS", *parts]
    assert (out / "_SUCCESS").read_bytes() == b""
    assert len(r.errors) == errors and r.errors[0].startswith(str(parquet[0]) + ":6: ")
    # A directory is a dataset: its files in name order, named as the directory was given.
    out2 = tmp_path / "out2"
    # One actor: what is checked here is the directory's listing, not the spread over actors (above).
    r2 = oray.count_paths(
        [str(ray_data / "pq")], str(out2), MODEL, ray_options=RayOptions(num_cpus=CPUS, concurrency=1)
    )
    assert _written(out2) == _local(parquet)
    assert r2.summary["total_tokens"] == _totals(_local(parquet))[2]


def test_odd_records_count_as_every_other_front_end(ray_cluster, tmp_path):
    """The parity corpus (tests/test_parity.py: ids past 64 bits, lone surrogates, null and
    non-string texts, odd roles, a BOM and blank lines) counted on Ray gives the command line's
    tokens, ids and errors row for row (ids from JSONL come out as their exact digits: the Parquet
    id column of a JSONL input is a string column)."""
    from tests.console import omnitok as run
    from tests.test_parity import _jsonl, _key, _loads

    path = _jsonl(tmp_path)
    cli = run("count", "-m", MODEL, str(path), "--on-error", "record")
    want = [
        (None if k[1] is None else str(k[1]), *k[2:]) for k in (_key(_loads(line)) for line in cli.out.splitlines())
    ]
    oray.count_paths([str(path)], str(tmp_path / "out"), MODEL, ray_options=RayOptions(num_cpus=CPUS, concurrency=1))
    import pyarrow.dataset as pads  # here: it imports pandas (~0.3 s), and every test process collects this file

    rows = pads.dataset(str(tmp_path / "out"), format="parquet").to_table().to_pylist()
    assert [(r["id"], r["tokens"], r["error"]) for r in rows] == want


@needs_ray
def test_an_input_uri_that_cannot_be_opened_is_one_line(tmp_path):
    from tests.console import omnitok as run

    r = run("count", "--ray", "-q", "-m", MODEL, "bogus://bucket/corpus/", "--output", str(tmp_path / "out"))
    assert r.code == 1 and "Traceback" not in r.err and "│" not in r.err, r.err
    assert r.err.strip().splitlines()[-1].startswith("omnitok: error: bogus://bucket/corpus/: cannot open: ")


@needs_ray
def test_refuses_non_empty_output_and_text_inputs(ray_data, tmp_path):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "old.parquet").write_bytes(b"x")
    from omnitok.errors import InputError, UsageError

    with pytest.raises(UsageError, match="not empty"):
        oray.count_paths([str(ray_data / "chats.jsonl")], str(tmp_path / "full"), MODEL)
    with pytest.raises(UsageError, match="Parquet or JSONL"):
        oray.count_paths([str(tmp_path / "notes.txt")], str(tmp_path / "o"), MODEL, input_format="text")
    with pytest.raises(InputError, match="no such file"):
        oray.count_paths([str(tmp_path / "missing.jsonl")], str(tmp_path / "o"), MODEL)


@needs_ray
def test_worker_killed_mid_job_keeps_totals_exact(ray_cluster, ray_data, tmp_path):
    flag = str(tmp_path / "died")

    class DiesOnce(oray.ShardCounter):
        """Exits the worker process, once, on its first shard of the marked file."""

        def shard(self, shard):
            if shard.source.endswith("part1.parquet") and not os.path.exists(flag):
                open(flag, "w").close()
                os._exit(1)
            return super().shard(shard)

    parquet = sorted((ray_data / "pq").iterdir())
    paths = [*parquet, ray_data / "chats.jsonl"]
    out = tmp_path / "out"
    r = oray.count_paths(
        [str(p) for p in paths],
        str(out),
        MODEL,
        ray_options=RayOptions(num_cpus=CPUS, concurrency=ACTORS, shard_bytes=SHARD_BYTES),
        batch_class=DiesOnce,
    )
    assert os.path.exists(flag)  # a worker did die
    local = _local(paths)
    got = _written(out)
    assert got == local  # no row lost, none twice
    assert (r.summary["records"], r.summary["errors"], r.summary["total_tokens"]) == _totals(local)


@needs_ray
def test_compress_same_as_library(ray_cluster):
    from omnitok.compression import Compressor
    from omnitok.compression.stream import CompressExtractor

    rng = random.Random(3)
    items = [
        {
            "id": i,
            "context": "\n\n".join(" ".join(rng.choice(WORDS) for _ in range(30)) + "." for _ in range(6)),
            "query": "brown fox",
        }
        for i in range(12)
    ]
    items.append({"id": 99, "context": None, "query": "q"})  # not a context: an error row
    got = {
        r["id"]: r
        for r in oray.compress(
            ray.data.from_items(items), MODEL, budget=40, ray_options=RayOptions(num_cpus=CPUS, concurrency=1)
        ).take_all()
    }
    comp = Compressor(MODEL, method="bm25", cache="off")
    ex = CompressExtractor()
    for item in items:
        row = got[str(item["id"])]
        try:
            job = ex.extract(item)[0][0]
        except ValueError as e:
            assert row["error"] == str(e) and row["original_tokens"] is None
            continue
        want = comp.compress(job.context, job.query, budget=40).to_dict()
        assert {k: row[k] for k in want} == want and row["error"] is None


@needs_ray
def test_validate_same_as_library(ray_cluster):
    from omnitok.api import Counter
    from omnitok.validation import score_pair

    rng = random.Random(5)
    items = []
    for i in range(20):
        original = _text(rng) + " end"
        items.append({"id": i, "original": original, "compressed": " ".join(original.split()[::2])})
    items.append({"id": 50, "original": "only one side", "compressed": None})
    metrics = ("rouge-l", "compression", "bleu", "chrf")
    ds = ray.data.from_items(items)
    got = {
        r["id"]: r
        for r in oray.validate(
            ds,
            metrics=metrics,
            model=MODEL,
            min_rouge_l=0.5,
            min_chrf=0.6,
            ray_options=RayOptions(num_cpus=CPUS, concurrency=1),
        ).take_all()
    }
    counter = Counter(MODEL, cache="off")
    for item in items:
        row = got[str(item["id"])]
        if item["compressed"] is None:
            assert row["error"] == "field 'compressed' is null, expected a string" and row["passed"] is None
            continue
        want = score_pair(item["original"], item["compressed"], metrics, counter)
        assert {k: row[k] for k in want} == want
        assert row["passed"] == (want["rouge_l_f1"] >= 0.5 and want["chrf"] >= 0.6)


@needs_ray
def test_unreachable_cluster_and_unwritable_output_are_one_line(ray_data, tmp_path):
    """A cluster that is not there fails at once (Ray alone retries for minutes); ray:// without
    Ray Client names the package; an output directory that cannot be made is exit 1. Each is one
    line on stderr and nothing on stdout (no Ray starts for any of them)."""
    import time

    from tests.console import omnitok

    src = str(ray_data / "chats.jsonl")
    out = str(tmp_path / "out")
    base = ["count", "--ray", "-m", MODEL, src, "--output", out, "-q"]
    t0 = time.monotonic()
    r = omnitok(*base, env={"RAY_ADDRESS": "127.0.0.1:1"}, timeout=30)
    assert (r.code, r.out) == (1, b"") and time.monotonic() - t0 < 30
    assert r.err == "omnitok: error: cannot reach the Ray cluster at 127.0.0.1:1: Connection refused\n"
    assert os.listdir(out) == []  # nothing left behind
    r = omnitok(*base, "--ray-address", "127.0.0.1:1", timeout=30)
    assert r.code == 1 and r.err == "omnitok: error: cannot reach the Ray cluster at 127.0.0.1:1: Connection refused\n"
    import ray as real_ray  # not tests.ray_corpus's stand-in: that answers no _-names (pytest's probes)
    from ray._private.utils import get_ray_client_dependency_error

    if get_ray_client_dependency_error() is not None:  # Ray Client is not installed here
        r = omnitok(*base, "--ray-address", "ray://127.0.0.1:10001", timeout=30)
        assert r.code == 2 and r.err.count("\n") == 1
        assert r.err.startswith("omnitok: error: ray://127.0.0.1:10001: a ray:// address needs Ray Client")
        assert f"pip install 'ray[client]=={real_ray.__version__}'" in r.err
    # Root writes through chmod: a directory even root cannot write to (sysfs) where there is one.
    unwritable = tmp_path / "read-only"
    unwritable.mkdir(mode=0o555)
    target = str(unwritable / "out")
    if os.geteuid() == 0:
        target = "/sys/kernel/omnitok-ray-out" if os.path.isdir("/sys/kernel") else None
    if target is not None:
        r = omnitok("count", "--ray", "-m", MODEL, src, "--output", target, "-q", timeout=60)
        assert (r.code, r.out) == (1, b"") and r.err.count("\n") == 1, r.err
        assert r.err.startswith(f"omnitok: error: {target}: cannot write the results: ")


def test_output_directory_rules(tmp_path):
    """Without Ray: what prepare_output finds in DIR. A stale _temporary (its run's pid is gone) is
    removed with one warning; one whose run is alive on this host is refused (another run writes
    there); a complete dataset and other files are refused, naming what is there; a failed run's
    directory is dropped whole."""
    import json as _json
    import socket

    from omnitok import notices
    from omnitok.errors import UsageError

    out = tmp_path / "out"
    run = out / "_temporary" / "run-old"
    run.mkdir(parents=True)
    (run / "part-00000.parquet").write_bytes(b"x")
    dead = 2**22 + 12345  # above Linux's default pid_max: no such process
    (run / "_owner.json").write_text(_json.dumps({"host": socket.gethostname(), "pid": dead}))
    said: list[str] = []
    notices.reset()
    notices.set_handler(said.append)
    try:
        mine = parts.prepare_output(str(out))
    finally:
        notices.set_handler(None)
    assert said == [f"{out}: removed _temporary/ left by an unfinished run (1 part files, never committed)"]
    assert os.listdir(out) == ["_temporary"] and os.listdir(out / "_temporary") == [os.path.basename(mine)]
    with pytest.raises(UsageError, match=rf"another run \(pid {os.getpid()}\) is writing into it"):
        parts.prepare_output(str(out))  # the run just prepared is this process's: alive
    parts.discard_run(str(out), mine)
    assert os.listdir(out) == []
    (out / "part-00000.parquet").write_bytes(b"x")
    with pytest.raises(UsageError, match=r"not empty \(part-00000.parquet\)"):
        parts.prepare_output(str(out))
    (out / "_SUCCESS").write_bytes(b"")
    with pytest.raises(UsageError, match=r"holds a complete dataset \(_SUCCESS, 1 part files\)"):
        parts.prepare_output(str(out))


def test_a_failed_run_is_dropped_whole_while_its_workers_still_write(tmp_path, monkeypatch):
    """Without Ray: discard_run while a worker's part lands in RUN. Where RUN cannot be renamed
    aside (here: the local filesystem wrapped, as an object store is), a file made during the
    removal (ENOTEMPTY) sends it round again, so DIR ends empty. On a local disk RUN is renamed
    aside first: a worker still writing parts in a loop fails at its next write (write_part never
    recreates RUN) and leaves nothing either. (Removal in place lost that race to such a writer for
    DISCARD_SECONDS once in a while, leaving a stale _temporary.)"""
    import errno
    import threading

    import pyarrow as pa

    out = tmp_path / "out"
    run = parts.prepare_output(str(out))
    table = pa.table({"tokens": [1, 2]})
    parts.write_part(table, run, 0)
    real = parts.filesystem
    races = []

    class LateWriter:  # the local filesystem, with a worker's part landing in RUN at the first removal
        def __init__(self, fs):
            self.fs = fs

        def __getattr__(self, name):
            return getattr(self.fs, name)

        def delete_dir(self, path):
            if path == run and not races:
                races.append(path)
                with open(os.path.join(run, "part-00001.parquet"), "wb") as f:  # a part's rename landing
                    f.write(b"PAR1")
                raise OSError(errno.ENOTEMPTY, "Directory not empty")
            return self.fs.delete_dir(path)

    monkeypatch.setattr(parts, "filesystem", lambda path: (LateWriter(real(path)[0]), real(path)[1]))
    parts.discard_run(str(out), run)
    assert races == [run] and os.listdir(out) == []
    monkeypatch.setattr(parts, "filesystem", real)

    # A real writer thread, writing parts until its run is gone.
    run = parts.prepare_output(str(out))
    failed: list[BaseException] = []
    started = threading.Event()

    def worker():
        for i in range(10_000):
            try:
                parts.write_part(table, run, i % 50)
            except OSError as e:
                failed.append(e)
                return
            started.set()

    t = threading.Thread(target=worker)
    t.start()
    started.wait(30)
    parts.discard_run(str(out), run)
    t.join(30)
    assert failed and os.listdir(out) == []
