"""`omnitok compress`: shrink contexts to an exact token budget, keeping what the query needs."""

from __future__ import annotations

import functools
import sys

import typer

from .. import errors
from . import _options as opt
from ._output import ProgressBar, error, info
from ._run import notify, report

EPILOG = """\
Examples:

  omnitok compress --context long.txt --query "who won in 1998?" --budget 500 --format text

  omnitok compress rag.jsonl -m gpt-4o --ratio 0.25 > compressed.jsonl     # records: context (+ query)

  cat rag.jsonl | omnitok compress -m claude-sonnet-4-5 --target-compression 0.9 --method bm25

  omnitok compress rag.jsonl --budget 2000 --min-quality 0.6 -o out.jsonl   # CI gate: exit 6 below 0.6

A record's context is a string, or a list of documents (strings or {"title", "text"} objects); its
query is optional (without one, the most central units are kept). Output rows: original_tokens,
compressed_tokens, compression_ratio (compressed/original), quality_score, compressed_text,
model_id, is_exact_tokenization, method, budget, kept_units, total_units, duplicates,
kept_passages.
"""

FORMATS = ("auto", "jsonl", "json", "text")


def compress_cmd(
    files: opt.Files = None,
    model: opt.Model = None,
    budget: int | None = typer.Option(
        None, "--budget", "-b", callback=opt.number(0, integer=True), help="Keep at most N tokens.", show_default=False
    ),
    ratio: float | None = typer.Option(
        None, "--ratio", callback=opt.number(0, 1), help="Keep this share of the tokens (0..1).", show_default=False
    ),
    target_compression: float | None = typer.Option(
        None,
        "--target-compression",
        callback=opt.number(0, 1),
        help="Remove this share of the tokens (0.944: keep 5.6%).",
        show_default=False,
    ),
    query: str | None = typer.Option(
        None, "--query", help="The query (for records without their own).", show_default=False
    ),
    context: str | None = typer.Option(
        None, "--context", help="One context from a text file ('-': stdin) instead of records.", show_default=False
    ),
    context_field: str | None = typer.Option(
        None,
        "--context-field",
        help="Field of the context (dotted path). Default: context, documents, passages, ctxs, or text.",
        show_default=False,
    ),
    query_field: str | None = typer.Option(
        None, "--query-field", help="Field of the query. Default: query or question.", show_default=False
    ),
    id_field: opt.IdField = "id",
    input_format: opt.InputFormat = "auto",
    method: str = typer.Option(
        "auto",
        "--method",
        help="combined (BM25 + embeddings), bm25 (fast, no model), dense (embeddings); "
        "auto: combined if the embedding model is installed (or --embedding-url given), else bm25.",
        autocompletion=opt.complete(opt.METHODS),
    ),
    embedding_url: str | None = typer.Option(
        None,
        "--embedding-url",
        help="An OpenAI-compatible embeddings service (…/v1); the local model takes over if it fails.",
        show_default=False,
    ),
    embedding_model: str | None = typer.Option(
        None, "--embedding-model", help="Model name sent to --embedding-url.", show_default=False
    ),
    embedding_key_env: str | None = typer.Option(
        None,
        "--embedding-key-env",
        help="The environment variable whose value is sent to --embedding-url as its key. Default: "
        "OMNITOK_EMBEDDING_API_KEY; OPENAI_API_KEY only to https://api.openai.com.",
        show_default=False,
    ),
    device: str = typer.Option(
        "auto", "--device", help="The embedding model on: auto (cuda when torch sees a GPU), cpu, or cuda."
    ),
    gap_marker: str | None = typer.Option(
        None, "--gap-marker", help="Text put where content was left out, e.g. '[...]'.", show_default=False
    ),
    no_dedup: bool = typer.Option(False, "--no-dedup", help="Keep near-duplicate units."),
    min_quality: float | None = typer.Option(
        None,
        "--min-quality",
        callback=opt.number(0, 1),
        help="Gate: exit 6 if any quality_score is below this.",
        show_default=False,
    ),
    tokenizer: opt.Tokenizer = None,
    engine: opt.Engine = "auto",
    cache: opt.CacheMode = "auto",
    no_cache: opt.NoCache = False,
    cache_dir: opt.CacheDir = None,
    fmt: str = typer.Option(
        "auto",
        "--format",
        help="jsonl, json, or text (the compressed text only). auto: text for --context, else jsonl.",
        autocompletion=opt.complete(FORMATS),
    ),
    output: opt.Output = None,
    on_error: opt.OnError = "stop",
    jobs: opt.Jobs = None,
    quiet: opt.Quiet = False,
) -> int:
    """Compress contexts to a token budget for a model, keeping what the query needs."""

    from .. import api

    api.check_budget(budget, ratio, target_compression)
    policy = api.ErrorPolicy(on_error)  # a bad --on-error is refused before anything is opened
    api.set_default_device(device)  # the local embedder's device; cuda without a GPU is a usage error
    if fmt not in FORMATS:
        raise errors.UsageError(f"--format must be one of {', '.join(FORMATS)}")
    api.output_format(fmt, output, False)  # refuses a --format that contradicts -o's suffix
    if context is not None:
        if files:
            raise errors.UsageError("give input files or --context, not both")
        files, input_format = [context], "text"
    if engine == "auto" and tokenizer is None:
        from ._small import small_input_engine

        engine = small_input_engine(model, None, files, None)
    if gap_marker is not None:  # its bytes checked as every text argument's are (it goes into the output)
        gap_marker = api.argument_text(gap_marker, "--gap-marker")
    options = api.CompressOptions(  # how to compress: one object, here and in --jobs workers
        method=method,
        embedding_url=embedding_url,
        embedding_model=embedding_model,
        embedding_key_env=embedding_key_env,
        gap_marker=gap_marker,
        dedup=not no_dedup,
        tokenizer=tokenizer,
        engine=engine,
        cache=opt.cache_mode(cache, no_cache),
        cache_dir=cache_dir,
    )
    comp = api.Compressor(model, options=options)
    try:
        if query is not None:
            query = api.argument_text(query, "--query")
        extractor = api.CompressExtractor(context_field, query_field, query, id_field or None)
        stream = api.open_inputs(files or [], extractor, input_format)
        if fmt == "auto":
            fmt = "text" if stream.single_text else "jsonl"
        out = api.open_output(output, stream.paths)
        writer = _Rows(fmt, out.stream, stream.single_text)
        bar = ProgressBar(stream.progress, enabled=not quiet, label="compressing")
        policy.notify = notify(bar.close)
        budgets = {"budget": budget, "ratio": ratio, "target_compression": target_compression}
        run = functools.partial(
            api.run_compress, stream, comp, policy, writer.emit, error_rows=fmt != "text", min_quality=min_quality
        )
        try:
            outcome = api.written(out, writer, lambda: run(jobs=jobs, progress=bar.update, **budgets))
        finally:
            bar.close()
    finally:
        comp.close()
    _tell(outcome, quiet, min_quality)
    return outcome.exit_code


def _tell(outcome, quiet: bool, min_quality: float | None) -> None:
    """compress's closing words on stderr: what was compressed, the bad records, the gate."""
    totals = outcome.totals
    n, total_in, total_out = totals["contexts"], totals["tokens_in"], totals["tokens_out"]
    if not quiet and n and (n > 1 or sys.stderr.isatty()):
        info(
            f"omnitok: compressed {n} context(s): {total_in:,} -> {total_out:,} tokens "
            f"({total_out / total_in if total_in else 0:.1%} kept)"
        )
    report(outcome, quiet)
    if outcome.stopped is None and totals["below"] and not quiet:
        error(f"quality gate failed: {totals['below']} of {n} results have quality_score < {min_quality}")


class _Rows:
    """compress's rows to its output: JSONL a line each, text (the compressed text only), or one
    JSON document at the end (the one row itself for a single text)."""

    def __init__(self, fmt: str, out, single_text: bool):
        self.fmt, self.out, self.single_text = fmt, out, single_text
        self.rows: list[dict] = []

    def emit(self, row: dict) -> None:
        from .. import api

        if self.fmt == "jsonl":
            self.out.write(api.json_dumps(row) + b"\n")
        elif self.fmt == "text":
            self.out.write((row.get("compressed_text", "") + "\n").encode())
        else:
            self.rows.append(row)

    def close(self) -> None:
        import orjson

        from .. import api

        if self.fmt == "json":
            rows = self.rows[0] if len(self.rows) == 1 and self.single_text else self.rows
            self.out.write(api.json_dumps(rows, option=orjson.OPT_INDENT_2) + b"\n")
