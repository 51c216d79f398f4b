"""`omnitok count --ray`: the count command run by omnitok.ray.count_paths on a Ray cluster.

Glue only: it checks the options that make no sense on a cluster, calls the library, prints the
summary (stdout, JSON) and the first errors (stderr), and returns count's exit code. Per-record
results go to the Parquet dataset DIR (--output), one part file per shard, in input order.
"""

from __future__ import annotations

import sys

from .. import errors
from ._output import error, info, warn

SHOWN_ERRORS = 20


def count_on_ray(
    paths: list[str],
    output: str | None,
    *,
    address: str | None = "auto",
    model: str | None = None,
    fields: tuple[str, ...] | None = None,
    id_field: str | None = "id",
    input_format: str = "auto",
    bundles: list[str] | None = None,
    workers: int | None = None,
    max_tokens: int | None = None,
    on_error: str = "stop",
    allow_estimate: bool = False,
    quiet: bool = False,
    options=None,
    **kwargs,
) -> int:
    """Run `omnitok count` over `paths` on Ray with `options` (an api.CountOptions, as `count`
    builds it), or keyword options, Counter's (encoding, engine, tokenizer, special_tokens,
    online, strict, cache, ...). Returns the exit code."""
    from dataclasses import replace

    from .. import api

    if options is None:
        options = api.CountOptions(**kwargs)
    elif kwargs:
        options = replace(options, **kwargs)
    if not output or output == "-":
        raise errors.UsageError("--ray writes a directory of Parquet files: give --output DIR")
    if on_error not in ("stop", "skip", "record"):
        raise errors.UsageError(f"--on-error must be stop, skip or record, not {on_error!r}")
    if options.cache == "auto":
        options = replace(options, cache="off")  # a worker's disk cache would be its node's alone: off unless asked
    try:
        from .. import ray as oray
    except ImportError:
        raise errors.UsageError("--ray needs Ray Data: pip install 'omnitok[ray]'") from None
    if not quiet:
        info(f"omnitok: counting on Ray ({address or 'auto'}) into {output} ...")
    result = oray.count_paths(
        paths,
        output,
        model,
        field=fields,
        id_field=id_field,
        input_format=input_format,
        bundles=bundles or (),
        address=address,
        concurrency=workers,
        max_tokens=max_tokens,
        # A cluster cannot stop at the first bad record: every one is an error row (or skipped).
        skip_errors=on_error == "skip",
        allow_estimate=allow_estimate,
        options=options,
    )
    import orjson

    sys.stdout.buffer.write(orjson.dumps(result.summary) + b"\n")
    sys.stdout.flush()
    return _finish(result, on_error, quiet)


def _finish(result, on_error: str, quiet: bool) -> int:
    s = result.summary
    code = errors.EXIT_OK
    if s.get("over_limit"):
        error(f"{s['over_limit']} of {s['counted']} records are over --max-tokens {s['max_tokens']}:")
        for where, rid, tokens in result.offenders[:50]:
            label = f" (id {rid})" if rid is not None else ""
            info(f"  {where}{label}: {tokens} tokens")
        if s["over_limit"] > 50:
            sys.stderr.write(f"  ... and {s['over_limit'] - 50} more\n")
        code = errors.EXIT_OVER_LIMIT
    if s["errors"]:
        if not quiet:
            for message in result.errors[:SHOWN_ERRORS]:
                error(message)
            more = s["errors"] - min(len(result.errors), SHOWN_ERRORS)
            where = "skipped" if on_error == "skip" else f"error rows in {s['output']}"
            warn(
                f"{s['errors']} of {s['records']} records had errors ({where})"
                + (f"; {more} not shown" if more > 0 else "")
            )
        code = errors.EXIT_BAD_RECORDS
    return code
