"""`omnitok count`: token counts for files and streams."""

from __future__ import annotations

from typing import Annotated

from .. import errors
from . import _options as opt
from ._output import ProgressBar, info, print_json, print_mapping, wants_json
from ._run import list_over_limit, notify, report

EPILOG = """\
Examples:

  echo -n "hello world" | omnitok count -m gpt-4o            # 2

  omnitok count -m gpt-4o --text "hello world"               # 2

  omnitok count --tokenizer ./my-model/ notes.txt            # a local tokenizer, no model id

  omnitok count -m gpt-4.1 data.jsonl --field body > counts.jsonl

  cat chats.jsonl | omnitok count -m gpt-4o --summary       # chat 'messages' records

  omnitok count -m gpt-4o docs.parquet --field text -o counts.parquet

  omnitok count -m gpt-4o prompts.jsonl --max-tokens 8000   # CI gate: exit 3 if any is over

  omnitok count -m gpt-4o in.jsonl --add-field n_tokens > out.jsonl
"""


def count(
    files: opt.Files = None,
    text: Annotated[
        list[str] | None,
        opt.Option(
            "--text",
            help="Count this text instead of files or stdin (repeat for several: one record each).",
            show_default=False,
        ),
    ] = None,
    model: opt.Model = None,
    encoding: opt.Encoding = None,
    field: opt.Field = None,
    id_field: opt.IdField = "id",
    input_format: opt.InputFormat = "auto",
    lines: opt.Lines = False,
    fmt: opt.Format = "auto",
    output: opt.Output = None,
    summary: Annotated[
        bool,
        opt.Option(
            "--summary",
            help="Print totals, min/mean/p50/p95/max and errors "
            "(to stdout; per-record results then go only to -o, if given).",
        ),
    ] = False,
    add_field: Annotated[
        str | None,
        opt.Option(
            "--add-field",
            callback=opt.not_empty,
            help="Write each input record back with its count added under this name (JSONL).",
            show_default=False,
        ),
    ] = None,
    max_tokens: Annotated[
        int | None,
        opt.Option(
            "--max-tokens",
            callback=opt.number(0, integer=True),
            help="CI gate: exit 3 and list the records over this many tokens.",
            show_default=False,
        ),
    ] = None,
    on_error: opt.OnError = "stop",
    jobs: opt.Jobs = None,
    engine: opt.Engine = "auto",
    tokenizer: opt.Tokenizer = None,
    no_special_tokens: opt.NoSpecialTokens = False,
    online: opt.Online = None,
    strict: opt.Strict = False,
    timeout: Annotated[
        float, opt.Option("--timeout", callback=opt.number(0.1, 3600), help="Online: seconds per request.")
    ] = 30.0,
    retries: Annotated[
        int,
        opt.Option(
            "--retries",
            callback=opt.number(0, 100, integer=True),
            help="Online: retries on 408/409/429/5xx and connection errors, with backoff honouring retry-after.",
        ),
    ] = 2,
    cache: opt.CacheMode = "auto",
    no_cache: opt.NoCache = False,
    cache_dir: opt.CacheDir = None,
    l3_url: opt.L3Url = None,
    explain: Annotated[bool, opt.Option("--explain", help="Say on stderr how the model was resolved.")] = False,
    ray_: Annotated[
        bool,
        opt.Option(
            "--ray",
            help="Count on a Ray cluster (pip install 'omnitok\\[ray]'): Parquet/JSONL files or directories, "
            "local or URIs; results as a Parquet dataset in --output DIR, the summary on stdout.",
        ),
    ] = False,
    ray_address: Annotated[
        str,
        opt.Option(
            "--ray-address",
            help="--ray: ray://HOST:10001 or HOST:6379; auto: $RAY_ADDRESS or a running local cluster, "
            "else a local Ray; local: always a new local Ray.",
        ),
    ] = "auto",
    bundle: Annotated[
        list[str] | None,
        opt.Option(
            "--bundle",
            help="--ray: a tokenizer bundle (omnitok bundle create) installed once on every node (repeatable).",
            show_default=False,
        ),
    ] = None,
    ray_workers: Annotated[
        int | None,
        opt.Option(
            "--ray-workers",
            callback=opt.number(1, integer=True),
            help="--ray: how many actors count (default: one a CPU of the cluster).",
            show_default=False,
        ),
    ] = None,
    verbose: Annotated[
        bool,
        opt.Option(
            "--verbose",
            help="--ray: Ray's own output on stderr (log lines, worker output, progress bars); quiet without it.",
            show_default=False,
        ),
    ] = False,
    quiet: opt.Quiet = False,
) -> None:
    """Count tokens of texts, JSONL records, chat messages or Parquet rows, exactly, offline.

    Text that looks like a special token (<|endoftext|>) is counted as plain text, as tiktoken's
    encode_ordinary and the APIs count user text.
    """
    if ray_ and (text or add_field or lines):
        raise errors.UsageError("--ray counts Parquet or JSONL files; --text, --add-field and --lines do not apply")
    _check_words(files)
    _one_blas_thread()
    from .. import api

    # --on-error (--ray's: its own rules) and --field checked before the small-input check may wait on stdin
    policy = None if ray_ else api.ErrorPolicy(on_error)
    fields = opt.split_fields(field)
    if engine == "auto" and not ray_ and tokenizer is None:
        from ._small import small_input_engine

        engine = small_input_engine(model, encoding, files, text)
    options = api.CountOptions(  # how to count: one object for every path (here, --jobs workers, --ray)
        encoding=encoding,
        engine=engine,
        tokenizer=tokenizer,
        special_tokens=not no_special_tokens,
        online=online,
        strict=strict,
        timeout=timeout,
        retries=retries,
        cache=opt.cache_mode(cache, no_cache),
        cache_dir=cache_dir,
        l3_url=l3_url,
    )
    if ray_:
        from .ray_cli import count_on_ray

        return count_on_ray(
            list(files or []),
            output,
            address=ray_address,
            model=model,
            fields=fields,
            id_field=id_field or None,
            input_format=input_format,
            bundles=bundle,
            workers=ray_workers,
            max_tokens=max_tokens,
            on_error=on_error,
            quiet=quiet,
            verbose=verbose,
            options=options,
        )
    with api.early_reference(list(files or []), jobs):  # a large input's reference: beside the fast engine
        counter = api.Counter(model, options=options)
        try:
            if explain:
                info("; ".join(f"{k}: {v}" for k, v in api.explain(counter).items()))
            extractor = api.Extractor(fields, counter.framing, id_field or None)
            stream = api.open_inputs(list(files or []), extractor, input_format, lines, bool(add_field), text or None)
            stats = api.Summary(max_tokens_limit=max_tokens)
            outcome = _run(
                api, stream, counter, policy, stats, output if summary else output or "-", fmt, add_field, jobs, quiet
            )
            cache_stats = counter.cache.run_stats() if counter.cache is not None else None
        finally:
            counter.close()
    return _finish(outcome, stats, counter.meta, cache_stats, fmt if summary else None, quiet)


def _finish(outcome, stats, meta: dict, cache_stats: dict | None, summary_fmt: str | None, quiet: bool) -> int:
    """After the local run: the summary (if asked for, in `summary_fmt`), the records over
    --max-tokens, the run's report on stderr; the exit code."""
    if summary_fmt is not None:
        _print_summary(stats, meta, summary_fmt, cache_stats)
    if outcome.stopped is None and stats.over_limit:
        list_over_limit(stats.over_limit, stats.counted, stats.max_tokens_limit, stats.offenders)
    report(outcome, quiet)
    return outcome.exit_code


def _run(api, stream, counter, policy, stats, records_out, fmt, add_field, jobs, quiet):
    """The local run: its rows to `records_out` (None: totals only) in the chosen format, committed
    only when the run ended well (api.written), a progress bar on a terminal."""
    out = sink = None
    if records_out is not None:
        kind = api.output_format(fmt, records_out, stream.single_text)
        out = api.open_output(records_out, stream.paths)
        try:
            id_type = stream.id_type() if kind == "parquet" else None  # Parquet out: the inputs' id type
            sink = api.make_sink(kind, out.stream, counter.meta, len(stream.paths) > 1, add_field, id_type)
        except BaseException:
            out.close(commit=False)
            raise
    bar = ProgressBar(stream.progress, enabled=not quiet)
    policy.notify = notify(bar.close)
    try:
        return api.written(
            out, sink, lambda: api.run_count(stream, counter, policy, stats, sink, jobs=jobs, progress=bar.update)
        )
    finally:
        bar.close()


def _one_blas_thread() -> None:
    """A count does no linear algebra, but numpy is loaded (gigatoken's encode hands back numpy
    arrays; the Unicode guard looks code points up in one): OpenBLAS, loaded with it, would start a
    thread per core that spins a while, about 7% of a one-line count's CPU time. One thread, unless
    the user set it (the variable is read when numpy is first imported, here or in a worker)."""
    import os

    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


def _check_words(files: list[str] | None) -> None:
    """A positional that is not a file and looks like words, not a file name (`omnitok count hello
    world`): say so, and how to count text, before anything is read."""
    import os

    for path in files or []:
        if path == "-" or "://" in path or os.path.lexists(path):
            continue
        if not any(c in path for c in "./\\") or any(c.isspace() for c in path):
            raise errors.InputError(path, None, "no such file (to count text, use --text)")
        return


def _print_summary(stats, meta: dict, fmt: str, cache_stats: dict | None = None) -> None:
    meta = stats.meta(meta)  # what the rows say, not what the run planned
    data = {**stats.to_dict(), **meta}
    if cache_stats is not None:
        data["cache"] = cache_stats
    if wants_json(fmt in ("json", "jsonl")):
        print_json(data)
        return
    rows = dict(stats.to_dict())
    if cache_stats is not None:
        rows.update({f"cache {k}": v for k, v in cache_stats.items()})
    title = (
        f"{meta['model']} ({meta['encoding']}, {meta['strategy']}, engine {meta.get('engine')}, exact={meta['exact']})"
    )
    print_mapping(rows, title)
