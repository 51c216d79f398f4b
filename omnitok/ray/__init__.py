"""omnitok on a Ray cluster, through Ray Data.

In your own pipeline (each returns a lazy `ray.data.Dataset`, one result row per input row):

    import ray, omnitok.ray
    from omnitok.ray import RayOptions
    ds = ray.data.read_parquet("s3://bucket/corpus/")
    counts = omnitok.ray.count(ds, model="gpt-4o", field="text")           # id, tokens, ...
    counts = omnitok.ray.count(ds, model="gpt-4o", field="text", keep=True)  # the row + its count
    omnitok.ray.compress(ds, model="gpt-4o", budget=500, ray_options=RayOptions(concurrency=8))
    omnitok.ray.validate(ds, metrics=("rouge-l", "compression"), model="gpt-4o")

How the work is spread (the cluster's address, CPUs an actor, actors, batch and shard sizes, the
runtime env, tokenizer bundles, the probe, ray.init's arguments, Ray's own output) is one
`RayOptions`, checked once when made; what is counted is the stage's options object
(CountOptions, CompressOptions, ValidateOptions) or keyword options.

Over files, as `omnitok count --ray` runs it (`count_paths`): the inputs (Parquet or JSONL files
or directories, local or any URI a pyarrow filesystem reads, or paths in a given filesystem) are
cut into shards (omnitok.io.shards: runs of Parquet row groups, byte ranges of JSONL files cut at
line starts); each actor reads, parses, extracts, counts and writes its shards' results as
`part-NNNNN.parquet` under `DIR/_temporary/<run>/` (named by shard, so a retried shard overwrites
its own file) and sends back only its totals; the summary is the sum. When every shard is done
the driver moves the parts into DIR and writes `DIR/_SUCCESS` (omnitok.io.parts: the Hadoop/Spark
committer's layout): a run killed before that leaves only `_temporary`, which readers skip and
the next run into DIR removes, saying so. A DIR that holds anything else is refused.

Every worker builds the engine-neutral core (omnitok.engine_core) once, from a plain spec, never
from a pickled tokenizer. Tokenizer files reach workers as bundles (`omnitok bundle create`):
the driver ships each archive through the object store with its sha256, and each node installs it
once into its own $OMNITOK_HOME, verified (omnitok.bundle.shipping), so an air-gapped cluster
counts exactly. Before the job, one probe task builds the core on a worker: a missing asset (a
model whose tokenizer files no bundle brought) fails there, with one message, instead of in every
task or as silent estimates.

A bad record is an error row, as locally. A worker that dies is restarted by Ray and its shard
rerun (Ray Data's actor pools default to max_restarts=-1, max_task_retries=-1); each shard's
result is kept once, so totals stay exact. Ray is quiet unless `RayOptions(verbose=True)`: no
worker output forwarded, no progress bars, no log lines below errors.
"""

from __future__ import annotations

try:
    import ray
    import ray.data
except ImportError as e:  # pragma: no cover - the extra is missing
    raise ImportError("omnitok.ray needs Ray Data: pip install 'omnitok[ray]'") from e

from omnitok.bundle.shipping import BundleAsset

from .cluster import RayOptions, connect, disconnect
from .files import RunResult, ShardCounter, count_paths
from .stages import StageBatches, check_workers, compress, count, ship_bundles, validate

__all__ = [
    "BundleAsset",
    "RayOptions",
    "RunResult",
    "ShardCounter",
    "StageBatches",
    "check_workers",
    "compress",
    "connect",
    "count",
    "count_paths",
    "disconnect",
    "ray",
    "ship_bundles",
    "validate",
]
