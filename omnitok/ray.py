"""omnitok on a Ray cluster, through Ray Data.

In your own pipeline (each returns a lazy `ray.data.Dataset`, one result row per input row):

    import ray, omnitok.ray
    ds = ray.data.read_parquet("s3://bucket/corpus/")
    counts = omnitok.ray.count(ds, model="gpt-4o", field="text")           # id, tokens, ...
    counts = omnitok.ray.count(ds, model="gpt-4o", field="text", keep=True)  # the row + its count
    omnitok.ray.compress(ds, model="gpt-4o", budget=500)
    omnitok.ray.validate(ds, metrics=("rouge-l", "compression"), model="gpt-4o")

Over files, as `omnitok count --ray` runs it (`count_paths`): the inputs (Parquet or JSONL files
or directories, local or any URI a pyarrow filesystem reads) are cut into shards (runs of Parquet
row groups, byte ranges of JSONL files cut at line starts); each actor reads, parses, extracts,
counts and writes its shards' results as `part-NNNNN.parquet` under `DIR/_temporary/<run>/` (named
by shard, so a retried shard overwrites its own file) and sends back only its totals; the summary
is the sum. When every shard is done the driver moves the parts into DIR and writes `DIR/_SUCCESS`
(the Hadoop/Spark committer's layout): a run killed before that leaves only `_temporary`, which
readers skip and the next run into DIR removes, saying so. A DIR that holds anything else is
refused.

Every worker builds the engine-neutral core (omnitok.engine_core) once, from a plain spec, never
from a pickled tokenizer. Tokenizer files reach workers as bundles (`omnitok bundle create`):
the driver ships each archive through the object store with its sha256, and each node installs it
once into its own $OMNITOK_HOME, verified, so an air-gapped cluster counts exactly. Before the job,
one probe task builds the core on a worker: a missing asset (a model whose tokenizer files no
bundle brought) fails there, with one message, instead of in every task or as silent estimates.

A bad record is an error row, as locally. A worker that dies is restarted by Ray and its shard
rerun (Ray Data's actor pools default to max_restarts=-1, max_task_retries=-1); each shard's
result is kept once, so totals stay exact.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections import Counter as Tally
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace

try:
    import ray
    import ray.data
except ImportError as e:  # pragma: no cover - the extra is missing
    raise ImportError("omnitok.ray needs Ray Data: pip install 'omnitok[ray]'") from e

from omnitok import engine_core
from omnitok.engine_core import BundleAsset, Spec
from omnitok.errors import AssetError, OmnitokError, UsageError
from omnitok.options import CompressOptions, CountOptions, ValidateOptions
from omnitok.options import build as build_options

__all__ = [
    "RunResult",
    "ShardCounter",
    "StageBatches",
    "compress",
    "connect",
    "count",
    "count_paths",
    "disconnect",
    "validate",
]


# --- the cluster ------------------------------------------------------------------------------------


def connect(address: str | None = "auto", **init) -> bool:
    """Join the Ray cluster at `address` (ray://host:10001, host:6379); "auto" (or None) joins the
    running one (RAY_ADDRESS, or one started by `ray start` on this host) and else starts a local
    Ray with `init`'s ray.init arguments; "local" always starts a local Ray. Nothing happens when
    Ray is already initialised. Returns whether this call initialised Ray. A cluster that cannot
    be reached is one UsageError (ray:// without Ray Client) or OmnitokError, within about 20 s,
    never Ray's endless retries."""
    if ray.is_initialized():
        return False
    init.setdefault("include_dashboard", False)
    init.setdefault("logging_level", "warning")
    joining = {k: v for k, v in init.items() if k not in ("num_cpus", "object_store_memory")}
    target = address if address not in (None, "", "auto", "local") else None
    if target is None and address != "local":
        target = os.environ.get("RAY_ADDRESS") or None
    if target is not None and target not in ("auto", "local"):
        _join(target, joining)
    elif address != "local" and (target == "auto" or _local_cluster()):
        try:
            ray.init(address="auto", **joining)
        except ConnectionError:  # what a stopped cluster left behind
            if target == "auto":
                raise OmnitokError("RAY_ADDRESS=auto: no running Ray cluster found on this host") from None
            ray.init(**init)
    else:
        ray.init(**init)
    return True


# A join gives up after one connection attempt (Ray's own default is 20 of them, each ~35 s: a
# wrong address looked like a hang); the CLI also shortens each attempt's wait (ray_cli).
JOIN_ATTEMPTS = "1"
PROBE_SECONDS = 5.0


def _join(target: str, joining: dict) -> None:
    """ray.init(address=target), failing fast: Ray Client's package checked first for ray://, and
    the cluster's port probed before Ray is asked (a refused or silent port is one error now)."""
    if target.startswith("ray://"):
        from ray._private.utils import get_ray_client_dependency_error

        if get_ray_client_dependency_error() is not None:
            raise UsageError(
                f"{target}: a ray:// address needs Ray Client (pip install 'ray[client]=={ray.__version__}'), "
                "or give the cluster's GCS address, HOST:6379"
            )
    else:
        _probe_address(target)
    key = "RAY_gcs_server_port_wait_time_s"  # read by ray.init's connect loop: attempts, ~1 s apart
    given = os.environ.get(key)
    os.environ[key] = given or JOIN_ATTEMPTS
    try:
        ray.init(address=target, **joining)
    except (ConnectionError, RuntimeError) as e:
        if ray.is_initialized():
            raise
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise OmnitokError(f"cannot reach the Ray cluster at {target}: {first}") from None
    finally:
        if given is None:
            os.environ.pop(key, None)


def _probe_address(target: str) -> None:
    """A TCP connection to the cluster's GCS address (HOST:PORT), as Ray will make it (localhost
    as this node's address), within PROBE_SECONDS; an address that is not HOST:PORT is left to Ray."""
    import socket

    from ray._private import services

    host, sep, port = target.rpartition(":")
    if not sep or not host or not port.isdigit():
        return
    host = host.strip("[]")
    hosts = [host]
    with contextlib.suppress(Exception):  # Ray's own lookup; the probe of the address as given stands
        hosts.append(services.resolve_ip_for_localhost(host))
    last: OSError | None = None
    for h in dict.fromkeys(hosts):
        try:
            socket.create_connection((h, int(port)), timeout=PROBE_SECONDS).close()
            return
        except OSError as e:
            last = e
    reason = "timed out" if isinstance(last, TimeoutError) else (last.strerror or str(last))
    raise OmnitokError(f"cannot reach the Ray cluster at {target}: {reason}")


def disconnect() -> None:
    """Leave Ray (and stop the local Ray that `connect` started, if any)."""
    ray.shutdown()


def _local_cluster() -> bool:
    """Whether `ray start` left a cluster on this host to join."""
    import tempfile

    return os.path.exists(os.path.join(tempfile.gettempdir(), "ray", "ray_current_cluster"))


def _slots(num_cpus: float) -> int:
    cpus = ray.cluster_resources().get("CPU", 1)
    return max(1, int(cpus / num_cpus + 1e-9)) if num_cpus > 0 else max(1, int(cpus))


def _quiet_data() -> None:
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False


# --- assets: bundles shipped to workers, checked before the job -------------------------------------


def ship_bundles(bundles: Iterable[str | BundleAsset]) -> tuple[tuple[BundleAsset, ...], list]:
    """Read and check each bundle here (engine_core.load_bundle: its manifest, and its sha256 when
    a BundleAsset pins one), and put its bytes in the object store: (assets for the spec, object
    refs for workers). A missing or wrong bundle fails here, before anything runs."""
    assets, refs = [], []
    for b in bundles:
        asset, data = engine_core.load_bundle(b)
        assets.append(asset)
        refs.append(ray.put(data))
    return tuple(assets), refs


def _probe(spec: dict, payloads: list) -> dict:
    """On a worker: build the core as the job's actors will, and say how it counts and what it
    warned about (a step down to an estimate for want of files is a warning locally)."""
    from omnitok import notices
    from omnitok.errors import OmnitokError

    said: list[str] = []
    notices.reset()
    notices.set_handler(said.append)
    try:
        core = engine_core.build(spec, ray.get(list(payloads)) if payloads else None)
    except OmnitokError as e:
        return {"error": e.message, "hint": e.hint, "kind": type(e).__name__}
    finally:
        notices.set_handler(None)
    meta = getattr(core, "meta", None)
    core.close()
    return {"meta": meta, "notices": said, "node": ray.get_runtime_context().get_node_id()}


def check_workers(
    spec: Spec, payloads: list, *, runtime_env: dict | None = None, num_cpus: float = 1, allow_estimate: bool = False
) -> dict | None:
    """Build the core once on a worker before the job; raise one clear error if it cannot be built
    there, or if it would count with an estimate because tokenizer files are missing (unless
    `allow_estimate`). Returns the planned meta (count) or None."""
    task = ray.remote(_probe).options(num_cpus=min(num_cpus, 1), runtime_env=runtime_env, max_retries=3)
    got = ray.get(task.remote(spec.to_dict(), payloads))
    if "error" in got:
        cls = UsageError if got["kind"] in ("UsageError", "UnknownModelError", "UnknownEncodingError") else AssetError
        raise cls(f"on the Ray workers: {got['error']}", hint=got.get("hint"))
    meta = got["meta"]
    if meta is not None and not meta.get("exact") and got["notices"] and not allow_estimate:
        raise AssetError(
            f"on the Ray workers: {got['notices'][0]}",
            hint="ship the tokenizer files as a bundle (omnitok bundle create; bundles=[...] / --bundle), "
            "or allow_estimate=True to count with the estimate",
        )
    return meta


# --- in a user's pipeline ---------------------------------------------------------------------------


class StageBatches:
    """The callable class `map_batches` runs: the core, built once per actor from the spec."""

    def __init__(self, spec: dict, payloads: Sequence = (), keep: bool = False):
        self.core = engine_core.build(spec, ray.get(list(payloads)) if payloads else None)
        self.keep = keep

    def __call__(self, table):
        out = self.core.table(table)
        if not self.keep:
            return out
        for name in out.column_names:
            if name == "id" and "id" in table.column_names:
                continue
            if name in table.column_names:
                raise UsageError(f"keep=True: the input already has a column {name!r}")
            table = table.append_column(out.schema.field(name), out[name])
        return table


def _map(
    ds,
    spec: Spec,
    bundles,
    *,
    keep: bool,
    num_cpus: float,
    concurrency: int | None,
    batch_size: int | None,
    runtime_env: dict | None,
    allow_estimate: bool,
    probe: bool,
):
    assets, refs = ship_bundles(bundles)
    if assets:
        spec = replace(spec, bundles=assets)
    if probe:
        check_workers(spec, refs, runtime_env=runtime_env, num_cpus=num_cpus, allow_estimate=allow_estimate)
    size = concurrency or _slots(num_cpus)
    return ds.map_batches(
        StageBatches,
        fn_constructor_kwargs={"spec": spec.to_dict(), "payloads": refs, "keep": keep},
        batch_format="pyarrow",
        batch_size=batch_size,
        compute=ray.data.ActorPoolStrategy(min_size=1, max_size=size),
        num_cpus=num_cpus,
        runtime_env=runtime_env,
    )


def _options(cls, options, kwargs: dict):
    """The options object a stage runs with: `options` as given (keyword options change its
    fields), or the keyword options over the workers' defaults (cache off; compress: BM25)."""
    if options is not None:
        return build_options(cls, options, kwargs)
    defaults = {"cache": "off", **({"method": "bm25"} if cls is CompressOptions else {})}
    return cls.from_dict({**defaults, **kwargs})


def _fields(field: str | Sequence[str] | None) -> tuple[str, ...] | None:
    if field is None:
        return None
    parts = [f.strip() for f in field.split(",")] if isinstance(field, str) else list(field)
    return tuple(p for p in parts if p) or None


def count(
    ds,
    model: str | None = None,
    *,
    field: str | Sequence[str] | None = None,
    id_field: str | None = "id",
    keep: bool = False,
    bundles: Iterable[str | BundleAsset] = (),
    num_cpus: float = 1,
    concurrency: int | None = None,
    batch_size: int | None = 4096,
    runtime_env: dict | None = None,
    allow_estimate: bool = False,
    probe: bool = True,
    options: CountOptions | None = None,
    **kwargs,
):
    """Token counts of a Dataset's rows: id, tokens, model, encoding, strategy, exact, error_band,
    error (a row whose text cannot be counted has `error` set and no tokens). With keep=True, the
    input row with those columns added. `field`: the text column or dotted path (several: a
    comma-separated string or a list; None: `messages` or `text`). `options`: a CountOptions,
    used as given; or keyword options, Counter's (encoding, engine, tokenizer, special_tokens,
    online, strict, cache; cache is off unless given)."""
    spec = Spec("count", model, _options(CountOptions, options, kwargs), _fields(field), id_field)
    return _map(
        ds,
        spec,
        bundles,
        keep=keep,
        num_cpus=num_cpus,
        concurrency=concurrency,
        batch_size=batch_size,
        runtime_env=runtime_env,
        allow_estimate=allow_estimate,
        probe=probe,
    )


def compress(
    ds,
    model: str | None = None,
    *,
    budget: int | None = None,
    ratio: float | None = None,
    target_compression: float | None = None,
    query: str | None = None,
    context_field: str | None = None,
    query_field: str | None = None,
    id_field: str | None = "id",
    keep: bool = False,
    bundles: Iterable[str | BundleAsset] = (),
    num_cpus: float = 1,
    concurrency: int | None = None,
    batch_size: int | None = 256,
    runtime_env: dict | None = None,
    allow_estimate: bool = False,
    probe: bool = True,
    options: CompressOptions | None = None,
    **kwargs,
):
    """Each row's context compressed to the budget (`omnitok compress`'s result fields, plus id and
    error). `options`: a CompressOptions, used as given; or keyword options, Compressor's
    (method: bm25 unless given, gap_marker, dedup, engine, ...; cache off unless given)."""
    from omnitok.compression import check_budget

    check_budget(budget, ratio, target_compression)
    params = {"budget": budget, "ratio": ratio, "target_compression": target_compression, "query": query}
    opts = _options(CompressOptions, options, kwargs)
    spec = Spec("compress", model, opts, (context_field, query_field), id_field, params)
    return _map(
        ds,
        spec,
        bundles,
        keep=keep,
        num_cpus=num_cpus,
        concurrency=concurrency,
        batch_size=batch_size,
        runtime_env=runtime_env,
        allow_estimate=allow_estimate,
        probe=probe,
    )


def validate(
    ds,
    *,
    metrics: Sequence[str] = ("rouge-l",),
    model: str | None = None,
    original_field: str = "original",
    compressed_field: str = "compressed",
    id_field: str | None = "id",
    stem: bool = False,
    min_rouge_l: float | None = None,
    max_ratio: float | None = None,
    min_bertscore: float | None = None,
    bertscore_model: str | None = None,
    rescale: bool = False,
    keep: bool = False,
    bundles: Iterable[str | BundleAsset] = (),
    num_cpus: float = 1,
    concurrency: int | None = None,
    batch_size: int | None = 1024,
    runtime_env: dict | None = None,
    allow_estimate: bool = False,
    probe: bool = True,
    options: ValidateOptions | None = None,
    **kwargs,
):
    """Per-pair scores of (original, compressed) rows (`omnitok validate`'s, with `passed` and the
    gates failed); aggregate them with Ray Data (`.mean("rouge_l_f1")`) or in pandas. BERTScore's
    idf needs the whole set, so it is not offered here. `options`: a ValidateOptions (its
    metrics, gates, stem, BERTScore model and rescaling, and `count` for the compression metric),
    used as given in place of those arguments; else `kwargs` are Counter's options for the
    compression metric (cache off unless given)."""
    if options is None:
        options = ValidateOptions(
            metrics=metrics,
            stem=stem,
            min_rouge_l=min_rouge_l,
            max_ratio=max_ratio,
            min_bertscore=min_bertscore,
            bertscore_model=bertscore_model,
            rescale=rescale,
            cache="off",
            count=_options(CountOptions, None, kwargs),
        )
    elif kwargs:
        raise TypeError("give options= or keyword options, not both")
    spec = Spec("validate", model, options, (original_field, compressed_field), id_field)
    return _map(
        ds,
        spec,
        bundles,
        keep=keep,
        num_cpus=num_cpus,
        concurrency=concurrency,
        batch_size=batch_size,
        runtime_env=runtime_env,
        allow_estimate=allow_estimate,
        probe=probe,
    )


# --- over files: `omnitok count --ray` --------------------------------------------------------------


def _number_lines(shards: list[dict], num_cpus: float, runtime_env: dict | None) -> None:
    """Line numbers for JSONL byte ranges: the line ends of every range but the last of each file,
    counted by tasks in parallel (a cheap pass: bytes.count over the range)."""
    todo = engine_core.ranges_to_count(shards)
    task = ray.remote(engine_core.newlines).options(num_cpus=min(num_cpus, 1), runtime_env=runtime_env, max_retries=3)
    refs = [task.remote(shards[i]["path"], shards[i]["start"], shards[i]["end"]) for i in todo]
    engine_core.number_lines(shards, dict(zip(todo, ray.get(refs), strict=True)))


class ShardCounter:
    """The callable class of `count_paths`: per shard, read, count, write part-<shard>.parquet
    into `output` (the run's directory under DIR/_temporary), and give back the shard's totals as one JSON row (never texts, never the rows)."""

    def __init__(self, spec: dict, payloads: Sequence, output: str, max_tokens: int | None = None, skip_errors=False):
        self.core = engine_core.build(spec, ray.get(list(payloads)) if payloads else None)
        self.output = output.rstrip("/")
        self.max_tokens = max_tokens
        self.skip_errors = skip_errors

    def __call__(self, batch):
        import pyarrow as pa

        stats = [json.dumps(self.shard(s)) for s in batch.to_pylist()]
        return pa.table({"stats": pa.array(stats, pa.string())})

    def shard(self, shard: dict) -> dict:
        table = self.core.records(engine_core.read_shard(shard, self.core.extractor()), where=True)
        stats = engine_core.shard_stats(table, shard["index"], self.max_tokens)
        if self.skip_errors:
            import pyarrow.compute as pc

            table = table.filter(pc.is_null(table["error"]))
        self.write(table, shard["index"])
        return stats

    def write(self, table, index: int) -> None:
        engine_core.write_part(table, self.output, index)


def _worker_error(e: BaseException, output: str) -> BaseException:
    """What a failed job raises here: an omnitok error from a worker as itself, a worker's OSError
    (a full disk, a read-only output) as one OutputError line; anything else as Ray raised it."""
    from omnitok.io.output import OutputError

    seen: set[int] = set()
    todo: list = [e]
    while todo:
        x = todo.pop(0)
        if x is None or id(x) in seen:
            continue
        seen.add(id(x))
        inner = getattr(x, "cause", None)  # a RayTaskError: the worker's own exception
        if isinstance(inner, BaseException):
            todo.insert(0, inner)
            continue
        if isinstance(x, OmnitokError):
            return x
        if isinstance(x, OSError) and x.errno:
            name = x.filename if isinstance(x.filename, str) else ""
            where = name if name.startswith("/") or "://" in name else output  # Ray's rewraps put text there
            return OutputError(f"{where}: {os.strerror(x.errno)}")
        todo += [x.__cause__, x.__context__]
    return e


@dataclass
class RunResult:
    """What `count_paths` did: the summary (as `omnitok count --summary` prints it, plus where the
    results are and how long each part took), the first errors and --max-tokens offenders."""

    summary: dict
    errors: list[str] = field(default_factory=list)
    offenders: list[tuple[str, object, int]] = field(default_factory=list)


def count_paths(
    paths: Sequence[str],
    output: str,
    model: str | None = None,
    *,
    field: str | Sequence[str] | None = None,
    id_field: str | None = "id",
    input_format: str = "auto",
    bundles: Iterable[str | BundleAsset] = (),
    address: str | None = "auto",
    num_cpus: float = 1,
    concurrency: int | None = None,
    shard_bytes: int = engine_core.SHARD_BYTES,
    max_tokens: int | None = None,
    skip_errors: bool = False,
    runtime_env: dict | None = None,
    allow_estimate: bool = False,
    init: dict | None = None,
    batch_class: type = ShardCounter,
    options: CountOptions | None = None,
    **kwargs,
) -> RunResult:
    """Count Parquet / JSONL inputs (files, directories, URIs) on Ray; results to the Parquet
    dataset DIR (`output`: part-NNNNN.parquet in input order, the columns of `omnitok count -o
    x.parquet` less pos, then an empty _SUCCESS; nothing is moved into DIR before every shard is
    done), totals in the returned summary. DIR must be new or empty (a stale _temporary of a
    killed run is removed, with a warning). `address`: "auto" joins a running
    cluster or starts a local Ray (with `init`'s ray.init arguments). Error rows are written
    unless `skip_errors`; either way the summary counts them. `batch_class`: the callable class
    the actors run (a ShardCounter subclass). `options`: a CountOptions, used as given; or keyword
    options, Counter's (cache off unless given)."""
    t0 = time.perf_counter()
    if shard_bytes < 1:
        raise UsageError("shard_bytes must be at least 1")
    fields = _fields(field)
    files = engine_core.list_inputs(paths, input_format)
    shown, output = output, output if "://" in output else os.path.abspath(output)  # workers run elsewhere
    run = engine_core.prepare_output(output)  # DIR/_temporary/<run>: the parts until the commit
    try:
        connect(address, **(init or {}))
        _quiet_data()
        assets, refs = ship_bundles(bundles)
        spec = Spec("count", model, _options(CountOptions, options, kwargs), fields, id_field, bundles=assets)
        planned = check_workers(spec, refs, runtime_env=runtime_env, num_cpus=num_cpus, allow_estimate=allow_estimate)
        t_ready = time.perf_counter()
        shards = engine_core.plan_shards(files, fields, id_field, shard_bytes)
        _number_lines(shards, num_cpus, runtime_env)
        t_planned = time.perf_counter()
        size = min(len(shards), concurrency or _slots(num_cpus))
        # A worker's own exception, not Ray Data's UserCodeException (which keeps only its text):
        # an OSError from a part's write becomes one line here (_worker_error).
        ctx = ray.data.DataContext.get_current()
        original, ctx.raise_original_map_exception = ctx.raise_original_map_exception, True
        ds = ray.data.from_items(shards, override_num_blocks=len(shards)).map_batches(
            batch_class,
            fn_constructor_kwargs={
                "spec": spec.to_dict(),
                "payloads": refs,
                "output": run,
                "max_tokens": max_tokens,
                "skip_errors": skip_errors,
            },
            batch_format="pyarrow",
            batch_size=1,
            compute=ray.data.ActorPoolStrategy(size=size),
            num_cpus=num_cpus,
            runtime_env=runtime_env,
        )
        try:
            stats = [json.loads(r["stats"]) for r in ds.take_all()]
        except Exception as e:
            raise _worker_error(e, shown) from None
        finally:
            ctx.raise_original_map_exception = original
        t_done = time.perf_counter()
        seen = Tally(st["index"] for st in stats)
        if sorted(seen) != list(range(len(shards))) or any(n != 1 for n in seen.values()):
            raise RuntimeError(
                f"Ray returned shards {sorted(seen.elements())}, expected each of 0..{len(shards) - 1} once"
            )
        engine_core.commit_parts(output, run, len(shards))
    except BaseException:
        engine_core.discard_run(output, run)
        raise
    s = engine_core.merge_stats(stats, planned, max_tokens)
    summary = {
        **s.to_dict(),
        **s.meta(planned),
        "output": shown,
        "files": len(files),
        "shards": len(shards),
        "workers": size,
        "seconds": {
            "startup": round(t_ready - t0, 3),
            "plan": round(t_planned - t_ready, 3),
            "run": round(t_done - t_planned, 3),
            "total": round(t_done - t0, 3),
        },
    }
    return RunResult(summary, list(s.error_list), list(s.offenders))
