"""`omnitok count --ray`: the count command run by omnitok.ray.count_paths on a Ray cluster.

Glue only: it checks the options that make no sense on a cluster, calls the library, prints the
summary (stdout, JSON: the only thing on stdout; Ray's own lines go to stderr) and the first errors
(stderr), and returns count's exit code. Per-record results go to the Parquet dataset DIR
(--output), one part file per shard, in input order, moved there with DIR/_SUCCESS when every
shard is done (omnitok.ray.count_paths).
"""

from __future__ import annotations

import sys

from .. import errors
from ._output import error, info, print_json, stdout_to_stderr, warn
from ._run import list_over_limit

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
    verbose: bool = False,
    options=None,
    **kwargs,
) -> int:
    """Run `omnitok count` over `paths` on Ray with `options` (an api.CountOptions, as `count`
    builds it), or keyword options, Counter's (encoding, engine, tokenizer, special_tokens,
    online, strict, cache, ...); the cluster settings become one omnitok.ray.RayOptions. Ray's
    own output (worker lines, progress bars, log lines below errors) only with `verbose`.
    Returns the exit code."""
    from dataclasses import replace

    from .. import api

    if options is None:
        options = api.CountOptions(**kwargs)
    elif kwargs:
        options = replace(options, **kwargs)
    if not output or output == "-":
        raise errors.UsageError("--ray writes a directory of Parquet files: give --output DIR")
    api.ErrorPolicy(on_error)  # the one check of --on-error
    if options.cache == "auto":
        options = replace(options, cache="off")  # a worker's disk cache would be its node's alone: off unless asked
    _ray_environment(address)
    try:
        from .. import ray as oray
    except ImportError:
        raise errors.UsageError("--ray needs Ray Data: pip install 'omnitok[ray]'") from None
    ray_options = oray.RayOptions(
        address=address,
        concurrency=workers,
        bundles=tuple(bundles or ()),
        allow_estimate=allow_estimate,
        verbose=verbose,
    )
    if not quiet:
        info(f"omnitok: counting on Ray ({address or 'auto'}) into {output} ...")
    joined = oray.ray.is_initialized()
    with stdout_to_stderr():  # Ray's worker and raylet lines: stdout is for the summary alone
        try:
            result = oray.count_paths(
                paths,
                output,
                model,
                field=fields,
                id_field=id_field,
                input_format=input_format,
                max_tokens=max_tokens,
                # A cluster cannot stop at the first bad record: every one is an error row (or skipped).
                skip_errors=on_error == "skip",
                options=options,
                ray_options=ray_options,
            )
        finally:
            if not joined:  # Ray's last log lines (printed as it shuts down) still go to stderr
                oray.disconnect()
    print_json(result.summary)
    return _finish(result, on_error, quiet)


def _ray_environment(address: str | None) -> None:
    """Ray's settings for a command-line run, made before Ray is imported (its core reads them
    once): no colour codes in its log lines unless stderr is a terminal (what Ray prints at all:
    RayOptions.verbose); and, when joining a cluster at a given address, a connection attempt
    that gives up in seconds, not minutes (Ray's default waits 30 s an attempt). Values already
    in the environment are kept."""
    import os

    if not sys.stderr.isatty():
        os.environ.setdefault("RAY_COLOR_PREFIX", "0")
    target = address if address not in (None, "", "auto", "local") else os.environ.get("RAY_ADDRESS")
    if target and target not in ("auto", "local") and not target.startswith("ray://") and "ray" not in sys.modules:
        os.environ.setdefault("RAY_py_gcs_connect_timeout_s", "10")


def _finish(result, on_error: str, quiet: bool) -> int:
    from .. import api

    s = result.summary
    if s.get("over_limit"):
        list_over_limit(s["over_limit"], s["counted"], s["max_tokens"], result.offenders)
    if s["errors"] and not quiet:
        for message in result.errors[:SHOWN_ERRORS]:
            error(message)
        more = s["errors"] - min(len(result.errors), SHOWN_ERRORS)
        where = "skipped" if on_error == "skip" else f"error rows in {s['output']}"
        warn(
            f"{s['errors']} of {s['records']} records had errors ({where})"
            + (f"; {more} not shown" if more > 0 else "")
        )
    # A cluster never stops at a bad record: the outcome of the whole run, its exit code as count's.
    outcome = api.Outcome(on_error, s["records"], s["counted"], s["errors"], s.get("over_limit", 0))
    return outcome.exit_code
