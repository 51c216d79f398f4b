"""In a user's pipeline: count, compress and validate as Ray Data stages (`map_batches` over an
actor pool, the engine-neutral core built once per actor), with tokenizer bundles shipped to the
workers and a probe of the core on one worker before the job."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import ray
import ray.data

from omnitok import engine_core
from omnitok.bundle.shipping import BundleAsset, load_bundle
from omnitok.engine_core import Spec
from omnitok.errors import AssetError, UsageError
from omnitok.options import CompressOptions, CountOptions, ValidateOptions
from omnitok.options import build as build_options

from .cluster import RayOptions, slots

# --- assets: bundles shipped to workers, checked before the job -------------------------------------


def ship_bundles(bundles: Sequence[str | BundleAsset]) -> tuple[tuple[BundleAsset, ...], list]:
    """Read and check each bundle here (bundle.shipping.load_bundle: its manifest, and its sha256
    when a BundleAsset pins one), and put its bytes in the object store: (assets for the spec,
    object refs for workers). A missing or wrong bundle fails here, before anything runs."""
    assets, refs = [], []
    for b in bundles:
        asset, data = load_bundle(b)
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


def check_workers(spec: Spec, payloads: list, ro: RayOptions) -> dict | None:
    """Build the core once on a worker before the job; raise one clear error if it cannot be built
    there, or if it would count with an estimate because tokenizer files are missing (unless
    `ro.allow_estimate`). Returns the planned meta (count) or None."""
    task = ray.remote(_probe).options(num_cpus=min(ro.num_cpus, 1), runtime_env=ro.runtime_env, max_retries=3)
    got = ray.get(task.remote(spec.to_dict(), payloads))
    if "error" in got:
        cls = UsageError if got["kind"] in ("UsageError", "UnknownModelError", "UnknownEncodingError") else AssetError
        raise cls(f"on the Ray workers: {got['error']}", hint=got.get("hint"))
    meta = got["meta"]
    if meta is not None and not meta.get("exact") and got["notices"] and not ro.allow_estimate:
        raise AssetError(
            f"on the Ray workers: {got['notices'][0]}",
            hint="ship the tokenizer files as a bundle (omnitok bundle create; RayOptions(bundles=[...]) / --bundle), "
            "or RayOptions(allow_estimate=True) to count with the estimate",
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


BATCH_SIZE = {"count": 4096, "compress": 256, "validate": 1024}  # rows a batch, unless RayOptions says


def _map(ds, spec: Spec, keep: bool, ro: RayOptions | None):
    ro = ray_options_of(ro)
    assets, refs = ship_bundles(ro.bundles)
    if assets:
        spec = replace(spec, bundles=assets)
    if ro.probe:
        check_workers(spec, refs, ro)
    return ds.map_batches(
        StageBatches,
        fn_constructor_kwargs={"spec": spec.to_dict(), "payloads": refs, "keep": keep},
        batch_format="pyarrow",
        batch_size=ro.batch_size or BATCH_SIZE[spec.stage],
        compute=ray.data.ActorPoolStrategy(min_size=1, max_size=ro.concurrency or slots(ro.num_cpus)),
        num_cpus=ro.num_cpus,
        runtime_env=ro.runtime_env,
    )


def ray_options_of(ro: Any) -> RayOptions:
    if ro is None:
        return RayOptions()
    if not isinstance(ro, RayOptions):
        raise TypeError(f"ray_options must be a RayOptions, not {type(ro).__name__}")
    return ro


def options_of(cls, options, kwargs: dict):
    """The options object a stage runs with: `options` as given (keyword options change its
    fields), or the keyword options over the workers' defaults (cache off; compress: BM25)."""
    if options is not None:
        return build_options(cls, options, kwargs)
    defaults = {"cache": "off", **({"method": "bm25"} if cls is CompressOptions else {})}
    return cls.from_dict({**defaults, **kwargs})


def fields_of(field: str | Sequence[str] | None) -> tuple[str, ...] | None:
    from ..records import fields_given

    return fields_given(field, "field")


def count(
    ds,
    model: str | None = None,
    *,
    field: str | Sequence[str] | None = None,
    id_field: str | None = "id",
    keep: bool = False,
    options: CountOptions | None = None,
    ray_options: RayOptions | None = None,
    **kwargs,
):
    """Token counts of a Dataset's rows: id, tokens, model, encoding, strategy, engine, exact,
    error_band, error (a row whose text cannot be counted has `error` set and no tokens). With
    keep=True, the input row with those columns added. `field`: the text column or dotted path
    (several: a comma-separated string or a list; None: `messages` or `text`). `options`: a
    CountOptions, used as given; or keyword options, Counter's (encoding, engine, tokenizer,
    special_tokens, online, strict, cache; cache is off unless given). `ray_options`: how it runs
    (RayOptions)."""
    spec = Spec("count", model, options_of(CountOptions, options, kwargs), fields_of(field), id_field)
    return _map(ds, spec, keep, ray_options)


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
    options: CompressOptions | None = None,
    ray_options: RayOptions | None = None,
    **kwargs,
):
    """Each row's context compressed to the budget (`omnitok compress`'s result fields, plus id and
    error). `options`: a CompressOptions, used as given; or keyword options, Compressor's
    (method: bm25 unless given, gap_marker, dedup, engine, ...; cache off unless given).
    `ray_options`: how it runs (RayOptions)."""
    from omnitok.compression import check_budget

    check_budget(budget, ratio, target_compression)
    params = {"budget": budget, "ratio": ratio, "target_compression": target_compression, "query": query}
    opts = options_of(CompressOptions, options, kwargs)
    spec = Spec("compress", model, opts, (context_field, query_field), id_field, params)
    return _map(ds, spec, keep, ray_options)


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
    min_bleu: float | None = None,
    min_chrf: float | None = None,
    bertscore_model: str | None = None,
    rescale: bool = False,
    keep: bool = False,
    options: ValidateOptions | None = None,
    ray_options: RayOptions | None = None,
    **kwargs,
):
    """Per-pair scores of (original, compressed) rows (`omnitok validate`'s, with `passed` and the
    gates failed); aggregate them with Ray Data (`.mean("rouge_l_f1")`) or in pandas. BERTScore's
    idf needs the whole set, so it is not offered here. `options`: a ValidateOptions (its
    metrics, gates, stem, BERTScore model and rescaling, and `count` for the compression metric),
    used as given in place of those arguments; else `kwargs` are Counter's options for the
    compression metric (cache off unless given). `ray_options`: how it runs (RayOptions)."""
    if options is None:
        from omnitok.validation import validate_options

        options = validate_options(locals(), cache="off", count=options_of(CountOptions, None, kwargs))
    elif kwargs:
        raise TypeError("give options= or keyword options, not both")
    spec = Spec("validate", model, options, (original_field, compressed_field), id_field)
    return _map(ds, spec, keep, ray_options)
