"""`omnitok validate`: ROUGE-L, BLEU, chrF, BERTScore and compression of compressed prompts vs
originals, as a CI gate."""

from __future__ import annotations

import itertools
import sys
from dataclasses import replace

import typer

from .. import errors
from . import _options as opt

EPILOG = """\
Examples:

  omnitok validate pairs.jsonl --min-rouge-l 0.5 --format junit -o report.xml

  omnitok validate --original "$(cat long.txt)" --compressed "$(cat short.txt)" --metrics rouge-l,compression -m gpt-4o

  omnitok validate pairs.jsonl --min-rouge-l 0.6 --fail-on p10 --format github

  omnitok validate pairs.jsonl --metrics rouge-l,bleu,chrf --min-chrf 0.5 --format markdown
"""


def validate_cmd(
    files: opt.Files = None,
    original: str | None = typer.Option(None, "--original", help="One pair: the original text.", show_default=False),
    compressed: str | None = typer.Option(
        None, "--compressed", help="One pair: the compressed text.", show_default=False
    ),
    original_file: str | None = typer.Option(
        None,
        "--original-file",
        help="Originals, one record a line (text, or JSONL with --original-field), aligned with --compressed-file.",
        show_default=False,
    ),
    compressed_file: str | None = typer.Option(
        None,
        "--compressed-file",
        help="Compressed texts, aligned line by line (or by --id-field with --align id).",
        show_default=False,
    ),
    align: str = typer.Option(
        "line", "--align", help="Two files: pair records by line or by id.", autocompletion=opt.complete(("line", "id"))
    ),
    original_field: str = typer.Option("original", "--original-field", help="Field of the original text."),
    compressed_field: str = typer.Option("compressed", "--compressed-field", help="Field of the compressed text."),
    id_field: opt.IdField = "id",
    input_format: opt.InputFormat = "auto",
    metrics: str = typer.Option(
        "rouge-l",
        "--metrics",
        help="Comma-separated: rouge-l, bleu, chrf, bertscore, compression.",
        autocompletion=opt.complete_list(opt.METRICS),
    ),
    model: opt.Model = None,
    stem: bool = typer.Option(False, "--stem", help="ROUGE-L with Porter stemming (rouge-score's use_stemmer)."),
    min_rouge_l: float | None = typer.Option(
        None, "--min-rouge-l", help="Gate: ROUGE-L F1 at least this.", show_default=False
    ),
    max_ratio: float | None = typer.Option(
        None, "--max-ratio", help="Gate: compressed/original tokens at most this.", show_default=False
    ),
    min_bertscore: float | None = typer.Option(
        None, "--min-bertscore", help="Gate: BERTScore F1 at least this.", show_default=False
    ),
    min_bleu: float | None = typer.Option(
        None,
        "--min-bleu",
        help="Gate: BLEU at least this, 0-1 (sacrebleu's sentence BLEU / 100).",
        show_default=False,
    ),
    min_chrf: float | None = typer.Option(
        None,
        "--min-chrf",
        help="Gate: chrF at least this, 0-1 (sacrebleu's sentence chrF / 100).",
        show_default=False,
    ),
    bertscore_model: str | None = typer.Option(
        None,
        "--bertscore-model",
        help="BERTScore: a local model directory (default: all-MiniLM-L6-v2, shipped).",
        show_default=False,
    ),
    idf: bool = typer.Option(False, "--idf", help="BERTScore: idf weighting over the originals."),
    rescale: bool = typer.Option(False, "--rescale", help="BERTScore: rescale with the model's baseline."),
    device: str = typer.Option(
        "auto", "--device", help="BERTScore's model on: auto (cuda when torch sees a GPU), cpu, or cuda."
    ),
    cache: opt.CacheMode = "auto",
    no_cache: opt.NoCache = False,
    cache_dir: opt.CacheDir = None,
    fail_on: str = typer.Option(
        "any",
        "--fail-on",
        help="any (every pair), mean, or p10 (each metric's worse 10% end: the ratio's 90th percentile).",
        autocompletion=opt.complete(("any", "mean", "p10")),
    ),
    fmt: str = typer.Option(
        "auto",
        "--format",
        help="table, jsonl, json, junit, github, markdown (auto: table on a terminal, else jsonl).",
        autocompletion=opt.complete(opt.REPORT_FORMATS),
    ),
    output: opt.Output = None,
    on_error: opt.OnError = "stop",
    jobs: opt.Jobs = None,
    quiet: opt.Quiet = False,
) -> int:
    """Score (original, compressed) pairs (ROUGE-L, BLEU, chrF, BERTScore, compression); exit 6 when a gate fails."""
    arguments = dict(locals())  # first: the options as given, before any other name is bound
    from .. import api
    from ..api import REPORT_FORMATS
    from ._output import error
    from ._run import notify, report

    policy = api.ErrorPolicy(on_error, notify())  # a bad --on-error is refused before anything is opened
    api.set_default_device(device)  # checked first: --device cuda without a GPU is a usage error
    # How to validate: one object for scoring and judging, each gate's range checked when it is made.
    options = api.validate_options(arguments, cache=opt.cache_mode(cache, no_cache))
    chosen = options.scored  # a gate on a metric turns the metric on
    api.output_format(fmt, output, False)  # refuses a --format that contradicts -o's suffix
    if fmt == "auto":
        fmt = "table" if (output is None and sys.stdout.isatty()) else "jsonl"
    if fmt not in REPORT_FORMATS:
        raise errors.UsageError(f"--format must be one of {', '.join(REPORT_FORMATS)}")
    source = _source(files, original, compressed, original_file, compressed_file)  # before anything is read
    if original is not None:
        original, compressed = api.argument_text(original, "--original"), api.argument_text(compressed, "--compressed")
    counter = None
    if "compression" in chosen:
        engine = _small_engine(model, source, files, (original, compressed), (original_file, compressed_file))
        if engine != "auto" and options.count.engine == "auto":
            options = replace(options, count=replace(options.count, engine=engine))
        counter = api.Counter(model, options=options.count)
    texts = (original, compressed, original_file, compressed_file, original_field, compressed_field)
    pairs = _pairs(source, files, *texts, id_field, align, input_format)
    if original is None:
        api.check_output(output, [original_file, compressed_file] if original_file is not None else files or ["-"])

    outcome, rows, summary, gate_fail = api.run_validate(pairs, options, policy, counter, jobs=jobs)
    if outcome.stopped is not None:
        report(outcome, quiet)
        return outcome.exit_code
    reader_gone = False
    try:
        with api.open_output(output) as out:
            api.write_report(fmt, rows, summary, out.stream)
    except BrokenPipeError:
        # The reader went away (`| head`). Every pair was judged before a row was written, so the
        # gate's verdict stands: a failed gate is still exit 6 (it was 0, and a CI step with
        # `| head` passed a failed gate).
        reader_gone = True
    report(outcome, quiet)
    if gate_fail and not quiet:
        n = len(gate_fail)
        error(
            f"quality gate failed ({fail_on}): "
            + (f"{n} of {outcome.done} pairs below threshold" if fail_on == "any" else "; ".join(gate_fail))
        )
    if reader_gone:
        from .app import StdoutClosed

        raise StdoutClosed(outcome.exit_code)
    return outcome.exit_code


def _source(files, original, compressed, original_file, compressed_file) -> str:
    """Where the pairs come from, checked before anything (stdin included) is read: "pair"
    (--original/--compressed), "aligned" (--original-file/--compressed-file) or "records" (files,
    else stdin, holding both texts)."""
    if (original is None) != (compressed is None):
        raise errors.UsageError("give both --original and --compressed, or neither")
    if (original_file is None) != (compressed_file is None):
        raise errors.UsageError("give both --original-file and --compressed-file, or neither")
    if original is not None and original_file is not None:
        raise errors.UsageError("give --original/--compressed or --original-file/--compressed-file, not both")
    if original is not None:
        if files:
            raise errors.UsageError("give files or --original/--compressed, not both")
        return "pair"
    if original_file is not None:
        if files:
            raise errors.UsageError("give pair files or --original-file/--compressed-file, not both")
        return "aligned"
    return "records"


def _small_engine(model, source: str, files, pair: tuple, pair_files: tuple) -> str:
    """count's rule for a small input (cli/_small.py: pybpe, no engine built for a few pairs)."""
    from ._small import small_input_engine

    if source == "pair":
        return small_input_engine(model, None, None, list(pair))
    if source == "aligned":
        return small_input_engine(model, None, list(pair_files), None)
    return small_input_engine(model, None, files, None)


def _pairs(
    source,
    files,
    original,
    compressed,
    original_file,
    compressed_file,
    original_field,
    compressed_field,
    id_field,
    align,
    fmt,
):
    """The pairs of a checked source (_source): (pos, id, where, original, compressed, error) tuples."""
    from .. import api

    if source == "pair":
        return [(0, None, "--original/--compressed", original, compressed, None)]
    if source == "aligned":
        return _aligned(original_file, compressed_file, original_field, compressed_field, id_field, align, fmt)
    extractor = api.Extractor((original_field, compressed_field), None, id_field or None)
    stream = api.open_inputs(files or [], extractor, fmt)
    several = len(stream.paths) > 1  # --on-error can help past a bad line or file only if input follows
    return ((r.pos, r.id, r.where, *(r.texts or [None, None]), r.error, r.line is not None or several) for r in stream)


def _aligned(a_path, b_path, a_field, b_field, id_field, align, input_format):
    """Pairs from two files: record i of one with record i of the other, or by id."""
    from .. import api

    if align not in ("line", "id"):
        raise errors.UsageError("--align must be line or id")

    def stream(path, field):
        fmt = input_format if input_format != "auto" else api.detect_format(path)
        fields = (field,) if fmt != "text" else None
        return api.open_inputs([path], api.Extractor(fields, None, id_field or None), fmt, lines=(fmt == "text"))

    a, b = stream(a_path, a_field), stream(b_path, b_field)
    if align == "id":
        yield from _by_id(a, b, a_path, b_path, id_field)
        return
    for ra, rb in itertools.zip_longest(a, b):
        if ra is None or rb is None:
            r = ra or rb
            missing = b_path if rb is None else a_path
            yield (r.pos, r.id, r.where, None, None, f"{missing} has no record to pair with this one")
            continue
        err = ra.error or rb.error
        yield (ra.pos, ra.id, ra.where, None if err else ra.texts[0], None if err else rb.texts[0], err)


def _by_id(a, b, a_path: str, b_path: str, id_field: str | None):
    """--align id: each record of A with B's record of the same id. Every record of either file
    comes out, as a pair or as an error (never dropped): a bad record, one without an id, an id
    given twice in its file, an id the other file lacks."""

    def problem(r, seen: set, path: str) -> str | None:
        if r.error is not None:
            return r.error
        if r.id is None:
            return f"no id (field {id_field!r}): --align id pairs records by id"
        if r.id in seen:
            return f"id {r.id!r} is given twice in {path}"
        seen.add(r.id)
        return None

    by_id, bad_b, seen_b, seen_a = {}, [], set(), set()
    for r in b:
        err = problem(r, seen_b, b_path)
        if err is None:
            by_id[r.id] = r
        else:
            bad_b.append((r, err))
    for r in a:
        err = problem(r, seen_a, a_path)
        other = by_id.pop(r.id, None) if err is None else None
        if err is None and other is None:
            err = f"no record with id {r.id!r} in {b_path}"
        yield (r.pos, r.id, r.where, None if err else r.texts[0], None if err else other.texts[0], err)
    for r, err in bad_b:
        yield (r.pos, r.id, r.where, None, None, err)
    for rid, r in by_id.items():
        yield (r.pos, rid, r.where, None, None, f"no record with id {rid!r} in {a_path}")
