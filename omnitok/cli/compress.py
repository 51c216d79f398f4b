"""`omnitok compress`: shrink contexts to an exact token budget, keeping what the query needs."""

from __future__ import annotations

import sys

import typer

from .. import errors
from . import _options as opt
from ._output import ProgressBar, error, info
from ._run import BadRecords, exit_code

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
    ),
    output: opt.Output = None,
    on_error: opt.OnError = "stop",
    jobs: opt.Jobs = None,
    quiet: opt.Quiet = False,
) -> int:
    """Compress contexts to a token budget for a model, keeping what the query needs."""
    import orjson

    from .. import api

    api.check_budget(budget, ratio, target_compression)
    bad = BadRecords(on_error, quiet)  # a bad --on-error is refused before anything is opened
    api.set_default_device(device)  # the local embedder's device; cuda without a GPU is a usage error
    if fmt not in FORMATS:
        raise errors.UsageError(f"--format must be one of {', '.join(FORMATS)}")
    api.output_format(fmt, output, False)  # refuses a --format that contradicts -o's suffix
    cache = opt.cache_mode(cache, no_cache)
    if context is not None:
        if files:
            raise errors.UsageError("give input files or --context, not both")
        files, input_format = [context], "text"
    options = api.CompressOptions(  # how to compress: one object, here and in --jobs workers
        method=method,
        embedding_url=embedding_url,
        embedding_model=embedding_model,
        embedding_key_env=embedding_key_env,
        gap_marker=gap_marker,
        dedup=not no_dedup,
        tokenizer=tokenizer,
        engine=engine,
        cache=cache,
        cache_dir=cache_dir,
    )
    comp = api.Compressor(model, options=options)
    extractor = api.CompressExtractor(context_field, query_field, query, id_field or None)
    stream = api.open_inputs(files or [], extractor, input_format)
    if fmt == "auto":
        fmt = "text" if stream.single_text else "jsonl"
    output_file = api.open_output(output, stream.paths)
    out = output_file.stream
    done = False
    bar = ProgressBar(stream.progress, enabled=not quiet, label="compressing")
    bad.before_print = bar.close
    rows, below, total_in, total_out, n = [], 0, 0, 0, 0
    try:
        for rec, row, err in api.compress_stream(
            stream, comp, jobs, budget=budget, ratio=ratio, target_compression=target_compression
        ):
            bar.update()
            where = {"pos": rec.pos, **({"id": rec.id} if rec.id is not None else {})}
            if err is not None:
                # --format text has no place for an error's reason: it goes to stderr as well.
                recorded = bad.keeps_rows() and fmt != "text"
                if not bad.bad(rec.where, err, recorded, rec.line is not None or len(stream.paths) > 1):
                    break
                if not bad.keeps_rows():
                    continue
                row = {**where, "source": rec.source, "line": rec.line, "error": err}  # as count's error rows
            else:
                n += 1
                total_in += row["original_tokens"]
                total_out += row["compressed_tokens"]
                if min_quality is not None and row["quality_score"] < min_quality:
                    below += 1
                    row = {**where, **row, "passed": False}
                else:
                    row = {**where, **row}
            if fmt == "jsonl":
                out.write(orjson.dumps(row) + b"\n")
            elif fmt == "text":
                out.write((row.get("compressed_text", "") + "\n").encode())
            else:
                rows.append(row)
        if bad.stopped is None and fmt == "json":
            out.write(
                orjson.dumps(rows[0] if len(rows) == 1 and stream.single_text else rows, option=orjson.OPT_INDENT_2)
            )
            out.write(b"\n")
        done = bad.stopped is None
    finally:
        bar.close()
        try:
            output_file.close(commit=done)  # a failed run leaves an existing -o file as it was
        finally:
            comp.close()
    if not quiet and n and (n > 1 or sys.stderr.isatty()):
        info(
            f"omnitok: compressed {n} context(s): {total_in:,} -> {total_out:,} tokens "
            f"({total_out / total_in if total_in else 0:.1%} kept)"
        )
    if bad.stopped is not None:
        bad.report(n + bad.count, n)
        return exit_code(bad)
    if below and not quiet:
        error(f"quality gate failed: {below} of {n} results have quality_score < {min_quality}")
    return exit_code(bad, gate_failed=bool(below))
