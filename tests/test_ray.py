"""omnitok on Ray: the same results as the local pipeline, from a real local Ray.

One Ray for the module (2 CPUs, a 300 MB object store), started with the workers' environment
air-gapped: an empty OMNITOK_HOME, an empty Hugging Face cache, HF_HUB_OFFLINE=1 and no config.
The OpenAI encodings are embedded, so they need nothing; a Hugging Face tokenizer reaches the
workers only as a bundle. Actors take half a CPU each, so that reads are never starved.
"""

from __future__ import annotations

import json
import os
import random

import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest

from omnitok import engine_core
from omnitok.api import count_files
from omnitok.errors import AssetError
from omnitok.io import parts
from omnitok.io import shards as sharding

try:
    import ray
    import ray.data

    import omnitok.ray as oray
    from omnitok.ray import RayOptions
except ImportError:  # the ray extra is not installed: the engine-core tests still run
    ray = oray = RayOptions = None

needs_ray = pytest.mark.skipif(
    ray is None, reason="omnitok.ray needs Ray Data: pip install 'omnitok[ray]' (the test extra has it)"
)

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # Ray Data's own, on first use

MODEL = "gpt-4o"
CPUS = 0.5  # a worker's share: 4 actors fit on 2 CPUs, reads keep room
# Two actors a stage where the actor count is not what is tested: each actor is a new worker
# process (~2 s of CPU to start); the bundle test keeps the 4 that fit.
ACTORS = 2
# Several shards per file (3 per Parquet file, 13 of the JSONL one), not 76 tiny ones: with 4000,
# test_count_paths_equals_local_pipeline took 12 s alone and 75 s in the parallel suite.
SHARD_BYTES = 16000
WORDS = [
    "the",
    "quick",
    "brown",
    "fox",
    "jumps",
    "over",
    "lazy",
    "dog",
    "中文",
    "émoji",
    "🙂",
    "tokens",
    "count",
    "<|endoftext|>",
]


@pytest.fixture(scope="module")
def airgap(tmp_path_factory):
    base = tmp_path_factory.mktemp("worker-env")
    env = {
        "OMNITOK_HOME": str(base / "omnitok-home"),
        "HF_HOME": str(base / "hf"),
        "HF_HUB_OFFLINE": "1",
        "XDG_CONFIG_HOME": str(base / "config"),
        "OMNITOK_LOCAL_MODEL_DIRS": "",
        "TIKTOKEN_CACHE_DIR": str(base / "tiktoken"),
    }
    return env


@pytest.fixture(scope="module")
def cluster(airgap):
    if ray is None:
        pytest.skip("omnitok.ray needs Ray Data: pip install 'omnitok[ray]'")
    if ray.is_initialized():
        ray.shutdown()
    ray.init(
        num_cpus=2,
        object_store_memory=300 * 1024 * 1024,
        include_dashboard=False,
        logging_level="warning",
        runtime_env={"env_vars": airgap},
    )
    yield
    ray.shutdown()


def _text(rng: random.Random) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(0, 40)))


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Three Parquet files (several row groups, null texts) and a JSONL file with every kind of
    bad line (invalid JSON, a JSON string, a missing field, blank lines, a BOM) and chats."""
    d = tmp_path_factory.mktemp("data")
    rng = random.Random(7)
    (d / "pq").mkdir()
    for k in range(3):
        rows = [{"id": f"p{k}-{i}", "text": None if i % 37 == 5 else _text(rng), "n": i} for i in range(300)]
        pq.write_table(pa.Table.from_pylist(rows), d / "pq" / f"part{k}.parquet", row_group_size=40)
    lines = []
    for i in range(1500):
        r = i % 40
        if r == 3:
            lines.append(b"{bad json")
        elif r == 7:
            lines.append(b"")
        elif r == 9:
            lines.append(b'"a bare string"')
        elif r == 11:
            lines.append(json.dumps({"id": i, "body": "no text here"}).encode())
        elif r == 13:
            msgs = [{"role": "system", "content": _text(rng)}, {"role": "user", "content": _text(rng)}]
            lines.append(json.dumps({"id": i, "messages": msgs}).encode())
        else:
            lines.append(json.dumps({"id": i, "text": _text(rng)}, ensure_ascii=False).encode())
    (d / "chats.jsonl").write_bytes(b"\xef\xbb\xbf" + b"\n".join(lines) + b"\n")
    return d


def _local(paths, model=MODEL, **options):
    return [
        (c.record.source, c.record.line, None if c.record.id is None else str(c.record.id), c.tokens, c.record.error)
        for c in count_files([str(p) for p in paths], model, jobs=1, cache="off", **options)
    ]


def _written(out):
    t = pads.dataset(str(out), format="parquet").to_table()
    return [(r["source"], r["line"], r["id"], r["tokens"], r["error"]) for r in t.to_pylist()]


def _totals(rows):
    ok = [r for r in rows if r[4] is None]
    return len(rows), len(rows) - len(ok), sum(r[3] for r in ok)


def test_engine_core_alone_equals_local_pipeline(data):
    """Without Ray: the shards of the inputs, line numbers from the counted line ends, each shard
    read and counted by the core, give count_files' rows; and a table gives its rows' counts."""
    parquet = sorted((data / "pq").iterdir())
    paths = [str(p) for p in [*parquet, data / "chats.jsonl"]]
    shards = sharding.plan_shards(sharding.list_inputs(paths), None, "id", 3000)
    todo = sharding.ranges_to_count(shards)
    sharding.number_lines(shards, {i: sharding.newlines(shards[i].path, shards[i].start, shards[i].end) for i in todo})
    core = engine_core.build(engine_core.Spec("count", MODEL))
    tables = [core.records(sharding.shard_records(s, core.extractor())) for s in shards]
    got = [(r["source"], r["line"], r["id"], r["tokens"], r["error"]) for t in tables for r in t.to_pylist()]
    assert got == _local(paths) and len(todo) > 10
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
def test_count_paths_equals_local_pipeline(cluster, data, tmp_path):
    parquet = sorted((data / "pq").iterdir())
    paths = [*parquet, data / "chats.jsonl"]
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
    r2 = oray.count_paths(
        [str(data / "pq")], str(out2), MODEL, ray_options=RayOptions(num_cpus=CPUS, concurrency=ACTORS)
    )
    assert _written(out2) == _local(parquet)
    assert r2.summary["total_tokens"] == _totals(_local(parquet))[2]


def test_odd_records_count_as_every_other_front_end(cluster, tmp_path):
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
    rows = pads.dataset(str(tmp_path / "out"), format="parquet").to_table().to_pylist()
    assert [(r["id"], r["tokens"], r["error"]) for r in rows] == want


@needs_ray
def test_an_input_uri_that_cannot_be_opened_is_one_line(tmp_path):
    from tests.console import omnitok as run

    r = run("count", "--ray", "-q", "-m", MODEL, "bogus://bucket/corpus/", "--output", str(tmp_path / "out"))
    assert r.code == 1 and "Traceback" not in r.err and "│" not in r.err, r.err
    assert r.err.strip().splitlines()[-1].startswith("omnitok: error: bogus://bucket/corpus/: cannot open: ")


@needs_ray
def test_refuses_non_empty_output_and_text_inputs(data, tmp_path):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "old.parquet").write_bytes(b"x")
    from omnitok.errors import InputError, UsageError

    with pytest.raises(UsageError, match="not empty"):
        oray.count_paths([str(data / "chats.jsonl")], str(tmp_path / "full"), MODEL)
    with pytest.raises(UsageError, match="Parquet or JSONL"):
        oray.count_paths([str(tmp_path / "notes.txt")], str(tmp_path / "o"), MODEL, input_format="text")
    with pytest.raises(InputError, match="no such file"):
        oray.count_paths([str(tmp_path / "missing.jsonl")], str(tmp_path / "o"), MODEL)


@needs_ray
def test_worker_killed_mid_job_keeps_totals_exact(cluster, data, tmp_path):
    flag = str(tmp_path / "died")

    class DiesOnce(oray.ShardCounter):
        """Exits the worker process, once, on its first shard of the marked file."""

        def shard(self, shard):
            if shard.source.endswith("part1.parquet") and not os.path.exists(flag):
                open(flag, "w").close()
                os._exit(1)
            return super().shard(shard)

    parquet = sorted((data / "pq").iterdir())
    paths = [*parquet, data / "chats.jsonl"]
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
def test_count_in_a_users_pipeline(cluster, data):
    ds = ray.data.read_parquet(str(data / "pq"))
    rows = oray.count(
        ds, MODEL, field="text", keep=True, ray_options=RayOptions(num_cpus=CPUS, concurrency=ACTORS)
    ).take_all()
    local = {r[2]: r for r in _local(sorted((data / "pq").iterdir()))}
    assert len(rows) == len(local)
    for row in rows:
        _, _, rid, tokens, error = local[row["id"]]
        assert (row["tokens"], row["error"]) == (tokens, error)
        assert "text" in row and row["model"] == MODEL and row["exact"] is True


@needs_ray
def test_compress_same_as_library(cluster):
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
            ray.data.from_items(items), MODEL, budget=40, ray_options=RayOptions(num_cpus=CPUS, concurrency=ACTORS)
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
def test_validate_same_as_library(cluster):
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
            ray_options=RayOptions(num_cpus=CPUS, concurrency=ACTORS),
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


QWEN = "Qwen/Qwen2.5-7B-Instruct"


@pytest.fixture(scope="module")
def qwen_bundle(tmp_path_factory):
    from omnitok.bundle import Recipe, create
    from tests.hf_assets import TOKENIZERS

    directory = TOKENIZERS["qwen2.5"][0]
    d = tmp_path_factory.mktemp("bundle")
    path = create(Recipe("qwen", [QWEN], local_dirs={QWEN: str(directory)}), str(d / "qwen.tar.gz"))
    return str(path), str(directory)


@needs_ray
def test_missing_asset_fails_before_the_job(cluster, data, qwen_bundle, tmp_path):
    out = tmp_path / "out"
    # Workers have no DeepSeek files (and no network): one message, before any shard runs.
    with pytest.raises(AssetError, match="on the Ray workers: no tokenizer files for 'deepseek-ai/DeepSeek-V3'"):
        oray.count_paths(
            [str(data / "chats.jsonl")], str(out), "deepseek-ai/DeepSeek-V3", ray_options=RayOptions(num_cpus=CPUS)
        )
    assert os.listdir(out) == []
    with pytest.raises(AssetError, match="cannot read the bundle"):
        oray.count(
            ray.data.from_items([{"text": "x"}]), QWEN, ray_options=RayOptions(bundles=[str(tmp_path / "nope.tar.gz")])
        )
    bad = oray.BundleAsset(qwen_bundle[0], "0" * 64)
    with pytest.raises(AssetError, match="expected 0000"):
        oray.count(ray.data.from_items([{"text": "x"}]), QWEN, ray_options=RayOptions(bundles=[bad]))


@needs_ray
def test_airgapped_workers_count_exactly_from_a_bundle(cluster, data, qwen_bundle, airgap, tmp_path):
    bundle, directory = qwen_bundle
    paths = [data / "chats.jsonl"]
    out = tmp_path / "out"
    ro = RayOptions(num_cpus=CPUS, shard_bytes=20000, bundles=[bundle])
    r = oray.count_paths([str(p) for p in paths], str(out), QWEN, ray_options=ro)
    assert r.summary["exact"] is True and r.summary["strategy"] == "hf-tokenizer"
    local = _local(paths, QWEN, tokenizer=directory)
    assert _written(out) == local
    # Installed once on this node (one marker, one bundle record), whatever the number of workers.
    home = airgap["OMNITOK_HOME"]
    assert len([n for n in os.listdir(os.path.join(home, "installed-bundles")) if n.endswith(".json")]) == 1
    assert len(os.listdir(os.path.join(home, "assets", "bundles"))) == 1


@needs_ray
def test_cli_glue(cluster, data, tmp_path, capsys):
    from omnitok.cli.ray_cli import count_on_ray
    from omnitok.errors import EXIT_BAD_RECORDS, UsageError

    with pytest.raises(UsageError, match="--output DIR"):
        count_on_ray([str(data / "chats.jsonl")], None, model=MODEL)
    out = tmp_path / "out"
    code = count_on_ray([str(data / "chats.jsonl")], str(out), model=MODEL, on_error="skip", max_tokens=30, quiet=False)
    std = capsys.readouterr()
    summary = json.loads(std.out)
    local = _local([data / "chats.jsonl"])
    assert code == EXIT_BAD_RECORDS and (summary["records"], summary["errors"], summary["total_tokens"]) == _totals(
        local
    )
    assert summary["over_limit"] == sum(1 for r in local if r[4] is None and r[3] > 30)
    assert "chats.jsonl:4: invalid JSON" in std.err and "records had errors (skipped)" in std.err
    assert all(r[4] is None for r in _written(out))  # skipped: no error rows written


def test_count_ray_through_the_console_script(cluster, data, tmp_path):
    """`omnitok count --ray` as a user types it: the console script joins the running local Ray
    (--ray-address auto) and gives the library's totals; a misuse is one usage line, exit 2."""
    import subprocess
    import sys
    from pathlib import Path

    omnitok_bin = str(Path(sys.executable).with_name("omnitok"))
    out = tmp_path / "out"
    args = [omnitok_bin, "count", "--ray", "-m", MODEL, str(data / "chats.jsonl"), "--output", str(out), "-q"]
    # RAY_ADDRESS names the module's cluster (auto reads it), so no second Ray starts.
    env = {**os.environ, "RAY_ADDRESS": ray.get_runtime_context().gcs_address}
    r = subprocess.run([*args, "--on-error", "skip"], capture_output=True, timeout=240, env=env)
    local = _local([data / "chats.jsonl"])
    summary = json.loads(r.stdout)
    assert r.returncode == 4, r.stderr.decode()[-2000:]
    assert r.stderr == b""  # -q, and Ray quiet unless --verbose: no log lines, progress bars, worker output
    assert (summary["records"], summary["errors"], summary["total_tokens"]) == _totals(local)
    r = subprocess.run([omnitok_bin, "count", "--ray", "--text", "x"], capture_output=True, timeout=60)
    assert r.returncode == 2 and r.stderr.decode().startswith("omnitok: error: --ray counts Parquet or JSONL files")


# --- outputs: committed whole or not at all; stdout for the summary alone; one-line failures -----

# A driver killed (kill -9) while its worker writes: the worker (one actor, shards in order) kills
# it on shard 2, once two parts are written.
KILLED_DRIVER = """
import os, signal, sys, time
import omnitok.ray as oray

class KillsDriver(oray.ShardCounter):
    def shard(self, shard):
        if shard.index == 2:
            deadline = time.time() + 60
            while time.time() < deadline and sum(n.startswith("part-") for n in os.listdir(self.output)) < 2:
                time.sleep(0.05)
            os.kill(DRIVER, signal.SIGKILL)
            time.sleep(60)
        return super().shard(shard)

DRIVER = os.getpid()
oray.count_paths(
    sys.argv[2:], sys.argv[1], "gpt-4o", batch_class=KillsDriver,
    ray_options=oray.RayOptions(num_cpus=0.5, concurrency=1, shard_bytes=16000),
)
"""

# `omnitok count` itself (cli.app.main), with a worker that dies once on its first shard: Ray
# prints its own lines about it ("A worker died ...", on stdout unless told otherwise).
WORKER_DIES = """
import os, sys
import omnitok.ray as oray

class DiesOnce(oray.ShardCounter):
    def shard(self, shard):
        if not os.path.exists(FLAG):
            open(FLAG, "w").close()
            os._exit(1)
        return super().shard(shard)

FLAG = sys.argv[1]
oray.count_paths.__kwdefaults__["batch_class"] = DiesOnce
from omnitok.cli.app import main
main(sys.argv[2:])
"""


@needs_ray
def test_killed_run_leaves_no_dataset_and_the_rerun_says_so(cluster, data, tmp_path):
    """kill -9 of the driver mid-job: DIR holds only _temporary (readers skip it), never a partial
    dataset. The next `omnitok count --ray` into DIR removes it, saying so in one warning, and
    commits the parts, then _SUCCESS; Ray's own lines (a worker dies here) go to stderr without
    colour codes and stdout is the JSON summary alone. A third run finds the complete dataset
    and refuses it (exit 2): results are never mixed or silently replaced."""
    import subprocess
    import sys

    from tests.console import omnitok

    address = ray.get_runtime_context().gcs_address  # the module's cluster: no second Ray starts
    env = {**os.environ, "RAY_ADDRESS": address}
    src = str(data / "chats.jsonl")
    out = tmp_path / "out"
    killed = subprocess.run([sys.executable, "-c", KILLED_DRIVER, str(out), src], env=env, timeout=120)
    assert killed.returncode == -9
    assert os.listdir(out) == ["_temporary"]
    assert pads.dataset(str(out), format="parquet").files == []  # nothing a reader takes for the data
    flag = str(tmp_path / "died")
    args = ["count", "--ray", "-m", MODEL, src, "--output", str(out), "--on-error", "record", "-q"]
    rerun = subprocess.run([sys.executable, "-c", WORKER_DIES, flag, *args], env=env, capture_output=True, timeout=240)
    err = rerun.stderr.decode()
    assert rerun.returncode == 4, err[-3000:]
    assert os.path.exists(flag)  # a worker did die
    summary = json.loads(rerun.stdout)  # the whole of stdout: one JSON document
    assert rerun.stdout.count(b"\n") == 1
    assert (summary["records"], summary["errors"], summary["total_tokens"]) == _totals(_local([src]))
    assert f"omnitok: warning: {out}: removed _temporary/ left by an unfinished run (" in err
    assert "\x1b[" not in err  # stderr is not a terminal: no colour codes
    assert sorted(os.listdir(out)) == ["_SUCCESS", "part-00000.parquet"]
    assert _written(out) == _local([src])
    again = omnitok(*args, env={"RAY_ADDRESS": address})
    assert again.code == 2 and again.out == b""
    assert again.err.startswith(f"omnitok: error: {out}: the directory is not empty: it holds a complete dataset")


@needs_ray
def test_unreachable_cluster_and_unwritable_output_are_one_line(data, tmp_path):
    """A cluster that is not there fails at once (Ray alone retries for minutes); ray:// without
    Ray Client names the package; an output directory that cannot be made is exit 1. Each is one
    line on stderr and nothing on stdout (no Ray starts for any of them)."""
    import time

    from tests.console import omnitok

    src = str(data / "chats.jsonl")
    out = str(tmp_path / "out")
    base = ["count", "--ray", "-m", MODEL, src, "--output", out, "-q"]
    t0 = time.monotonic()
    r = omnitok(*base, env={"RAY_ADDRESS": "127.0.0.1:1"}, timeout=30)
    assert (r.code, r.out) == (1, b"") and time.monotonic() - t0 < 30
    assert r.err == "omnitok: error: cannot reach the Ray cluster at 127.0.0.1:1: Connection refused\n"
    assert os.listdir(out) == []  # nothing left behind
    r = omnitok(*base, "--ray-address", "127.0.0.1:1", timeout=30)
    assert r.code == 1 and r.err == "omnitok: error: cannot reach the Ray cluster at 127.0.0.1:1: Connection refused\n"
    from ray._private.utils import get_ray_client_dependency_error

    if get_ray_client_dependency_error() is not None:  # Ray Client is not installed here
        r = omnitok(*base, "--ray-address", "ray://127.0.0.1:10001", timeout=30)
        assert r.code == 2 and r.err.count("\n") == 1
        assert r.err.startswith("omnitok: error: ray://127.0.0.1:10001: a ray:// address needs Ray Client")
        assert f"pip install 'ray[client]=={ray.__version__}'" in r.err
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


@needs_ray
def test_a_failed_part_write_commits_nothing(cluster, data, tmp_path):
    """A worker's write that fails (a full disk) is one OutputError naming the cause; DIR is left
    as it was (empty: no parts, no _temporary, no _SUCCESS)."""
    import errno

    from omnitok.io.output import OutputError

    class DiskFull(oray.ShardCounter):
        def write(self, table, index):
            if index == 1:
                raise OSError(errno.ENOSPC, "No space left on device")
            super().write(table, index)

    out = tmp_path / "out"
    paths = [str(p) for p in sorted((data / "pq").iterdir())[:1]]
    with pytest.raises(OutputError, match=f"^{out}: No space left on device$"):
        oray.count_paths(
            paths,
            str(out),
            MODEL,
            ray_options=RayOptions(num_cpus=CPUS, concurrency=1, shard_bytes=SHARD_BYTES),
            batch_class=DiskFull,
        )
    assert os.listdir(out) == []


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
