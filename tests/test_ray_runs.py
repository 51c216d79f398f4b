"""omnitok on Ray, continued (tests/test_ray.py has the module's notes): bundles to air-gapped
workers, a user's own pipeline, the command line's glue, and outputs committed whole or not at
all (a killed driver, a dying worker, a failed write)."""

from __future__ import annotations

import json
import os

import pytest

from omnitok.errors import AssetError
from tests.ray_corpus import ACTORS, CPUS, MODEL, SHARD_BYTES, RayOptions, needs_ray, oray, ray
from tests.ray_corpus import local as _local
from tests.ray_corpus import totals as _totals
from tests.ray_corpus import written as _written

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # Ray Data's own, on first use


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
def test_missing_asset_fails_before_the_job(ray_cluster, ray_data, qwen_bundle, tmp_path):
    out = tmp_path / "out"
    # Workers have no DeepSeek files (and no network): one message, before any shard runs.
    with pytest.raises(AssetError, match="on the Ray workers: no tokenizer files for 'deepseek-ai/DeepSeek-V3'"):
        oray.count_paths(
            [str(ray_data / "chats.jsonl")], str(out), "deepseek-ai/DeepSeek-V3", ray_options=RayOptions(num_cpus=CPUS)
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
def test_airgapped_workers_count_exactly_from_a_bundle(ray_cluster, ray_data, qwen_bundle, ray_airgap, tmp_path):
    bundle, directory = qwen_bundle
    paths = [ray_data / "chats.jsonl"]
    out = tmp_path / "out"
    # Two actors (ACTORS) over 11 shards: more than one worker builds the core from the bundle.
    ro = RayOptions(num_cpus=CPUS, concurrency=ACTORS, shard_bytes=20000, bundles=[bundle])
    r = oray.count_paths([str(p) for p in paths], str(out), QWEN, ray_options=ro)
    assert r.summary["exact"] is True and r.summary["strategy"] == "hf-tokenizer"
    local = _local(paths, QWEN, tokenizer=directory)
    assert _written(out) == local
    # Installed once on this node (one marker, one bundle record), whatever the number of workers.
    home = ray_airgap["OMNITOK_HOME"]
    assert len([n for n in os.listdir(os.path.join(home, "installed-bundles")) if n.endswith(".json")]) == 1
    assert len(os.listdir(os.path.join(home, "assets", "bundles"))) == 1


@needs_ray
def test_count_in_a_users_pipeline(ray_cluster, ray_data, monkeypatch):
    # Ray Data reads Parquet footers with a pool of actors (32 by default, each a worker process to
    # start, most killed unused): one reads the three small files' footers here.
    monkeypatch.setenv("RAY_DATA_PARQUET_FOOTER_NUM_ACTORS", "1")
    ds = ray.data.read_parquet(str(ray_data / "pq"))
    rows = oray.count(
        ds, MODEL, field="text", keep=True, ray_options=RayOptions(num_cpus=CPUS, concurrency=1)
    ).take_all()
    local = {r[2]: r for r in _local(sorted((ray_data / "pq").iterdir()))}
    assert len(rows) == len(local)
    for row in rows:
        _, _, rid, tokens, error = local[row["id"]]
        assert (row["tokens"], row["error"]) == (tokens, error)
        assert "text" in row and row["model"] == MODEL and row["exact"] is True


@needs_ray
def test_cli_glue(ray_cluster, ray_data, tmp_path, capsys):
    from omnitok.cli.ray_cli import count_on_ray
    from omnitok.errors import EXIT_BAD_RECORDS, UsageError

    with pytest.raises(UsageError, match="--output DIR"):
        count_on_ray([str(ray_data / "chats.jsonl")], None, model=MODEL)
    out = tmp_path / "out"
    code = count_on_ray(
        [str(ray_data / "chats.jsonl")], str(out), model=MODEL, on_error="skip", max_tokens=30, quiet=False
    )
    std = capsys.readouterr()
    summary = json.loads(std.out)
    local = _local([ray_data / "chats.jsonl"])
    assert code == EXIT_BAD_RECORDS and (summary["records"], summary["errors"], summary["total_tokens"]) == _totals(
        local
    )
    assert summary["over_limit"] == sum(1 for r in local if r[4] is None and r[3] > 30)
    assert "chats.jsonl:4: invalid JSON" in std.err and "records had errors (skipped)" in std.err
    assert all(r[4] is None for r in _written(out))  # skipped: no error rows written


def test_count_ray_through_the_console_script(ray_cluster, ray_data, tmp_path):
    """`omnitok count --ray` as a user types it: the console script joins the running local Ray
    (--ray-address auto) and gives the library's totals; a misuse is one usage line, exit 2."""
    import subprocess
    import sys
    from pathlib import Path

    omnitok_bin = str(Path(sys.executable).with_name("omnitok"))
    out = tmp_path / "out"
    args = [omnitok_bin, "count", "--ray", "-m", MODEL, str(ray_data / "chats.jsonl"), "--output", str(out), "-q"]
    # RAY_ADDRESS names the module's cluster (auto reads it), so no second Ray starts.
    env = {**os.environ, "RAY_ADDRESS": ray.get_runtime_context().gcs_address}
    r = subprocess.run([*args, "--on-error", "skip"], capture_output=True, timeout=240, env=env)
    local = _local([ray_data / "chats.jsonl"])
    summary = json.loads(r.stdout)
    assert r.returncode == 4, r.stderr.decode()[-2000:]
    assert r.stderr == b""  # -q, and Ray quiet unless --verbose: no log lines, progress bars, worker output
    assert (summary["records"], summary["errors"], summary["total_tokens"]) == _totals(local)
    r = subprocess.run([omnitok_bin, "count", "--ray", "--text", "x"], capture_output=True, timeout=60)
    assert r.returncode == 2 and r.stderr.decode().startswith("omnitok: error: --ray counts Parquet or JSONL files")


# --- outputs: committed whole or not at all; stdout for the summary alone; one-line failures -----

# A driver killed (kill -9) while its worker writes: the worker (one actor, shards in order) kills
# it on shard 2, once two parts are written. Three shards of the JSONL file (70000 bytes each), so
# the job is cut before its last shard and commit, with 2 line-counting tasks to run, not 12.
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
    ray_options=oray.RayOptions(num_cpus=0.5, concurrency=1, shard_bytes=70000),
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
def test_killed_run_leaves_no_dataset_and_the_rerun_says_so(ray_cluster, ray_data, tmp_path):
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
    src = str(ray_data / "chats.jsonl")
    out = tmp_path / "out"
    killed = subprocess.run([sys.executable, "-c", KILLED_DRIVER, str(out), src], env=env, timeout=120)
    assert killed.returncode == -9
    assert os.listdir(out) == ["_temporary"]
    import pyarrow.dataset as pads  # here, not at collection: it imports pandas

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
def test_a_failed_part_write_commits_nothing(ray_cluster, ray_data, tmp_path):
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
    paths = [str(p) for p in sorted((ray_data / "pq").iterdir())[:1]]
    with pytest.raises(OutputError, match=f"^{out}: No space left on device$"):
        oray.count_paths(
            paths,
            str(out),
            MODEL,
            ray_options=RayOptions(num_cpus=CPUS, concurrency=1, shard_bytes=SHARD_BYTES),
            batch_class=DiskFull,
        )
    assert os.listdir(out) == []
