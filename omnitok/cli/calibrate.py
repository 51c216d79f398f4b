"""`omnitok calibrate`: fit the offline Claude estimate to the provider's counts of your texts."""

from __future__ import annotations

import typer

from .. import errors
from . import _options as opt
from ._output import info, print_json, warn

EPILOG = """\
Examples:

  ANTHROPIC_API_KEY=... omnitok calibrate -m claude-sonnet-4-5 prompts.jsonl   # 600 texts counted online

  omnitok count -m claude-sonnet-4-5 prompts.jsonl        # offline, with it: error_band = its measured p95

  omnitok calibrate --list

  omnitok bundle create --calibration ID -o cal.tar.gz    # carry it to an air-gapped host
"""


def calibrate_cmd(
    files: list[str] | None = typer.Argument(None, help="Input files (JSONL, JSON, Parquet, text); '-' for stdin."),
    model: str | None = typer.Option(
        None, "--model", "-m", help="The Claude model id (Anthropic or Bedrock).", show_default=False
    ),
    sample: int = typer.Option(600, "--sample", help="Texts to count online (stratified by content type and script)."),
    max_calls: int | None = typer.Option(
        None,
        "--max-calls",
        help="At most this many provider calls, retries and framing probes included (default: 2 x --sample + 2).",
        show_default=False,
    ),
    field: opt.Field = None,
    input_format: opt.InputFormat = "auto",
    lines: opt.Lines = False,
    seed: int = typer.Option(0, "--seed", help="Seed of the sample."),
    concurrency: int = typer.Option(4, "--concurrency", help="Provider calls in flight."),
    timeout: float = typer.Option(30.0, "--timeout", help="Seconds per provider call."),
    retries: int = typer.Option(4, "--retries", help="Retries of a failed call (honouring retry-after)."),
    list_: bool = typer.Option(False, "--list", help="List the installed calibrations and exit."),
    show: str | None = typer.Option(None, "--show", help="Print one calibration (JSON) and exit.", show_default=False),
    quiet: opt.Quiet = False,
) -> None:
    """Count a sample of your texts with the provider's count API, fit the offline estimate to it,
    and store it with the error it measured on held-out texts: offline counts for the model use it."""
    from .. import api

    if list_ or show is not None:
        if list_ and show is not None:
            raise errors.UsageError("give --list or --show, not both")
        if files or model:
            raise errors.UsageError("--list and --show take no model or files")
        if show is not None:
            print_json(api.load_calibration(show).data)
        else:
            for cal in api.installed_calibrations():
                print_json(cal.row())
        return
    if not model:
        raise errors.UsageError("give the model to calibrate: -m MODEL (or --list / --show ID)")
    for name, value, low in (("--sample", sample, 1), ("--concurrency", concurrency, 1), ("--retries", retries, 0)):
        if value < low:
            raise errors.UsageError(f"{name} must be at least {low}, not {value}")
    if max_calls is not None and max_calls < 1:
        raise errors.UsageError(f"--max-calls must be at least 1, not {max_calls}")
    if not timeout > 0:
        raise errors.UsageError(f"--timeout must be a number of seconds > 0, not {timeout}")
    extractor = api.Extractor(opt.split_fields(field), None, None)
    stream = api.open_inputs(list(files or []), extractor, input_format, lines)
    bad = [0]

    def texts():
        for rec in stream:
            if rec.error is not None:
                bad[0] += 1
                continue
            yield from rec.texts

    done = [0]

    def progress(n: int) -> None:
        done[0] += n
        if not quiet and done[0] % 50 == 0:
            info(f"omnitok: calibrate: {done[0]} texts counted")

    cal, run = api.calibrate(
        model,
        texts(),
        sample=sample,
        max_calls=max_calls,
        seed=seed,
        concurrency=concurrency,
        timeout=timeout,
        retries=retries,
        progress=progress,
        warn=warn,
    )
    if bad[0]:
        warn(f"calibrate: {bad[0]} records without a usable text were left out of the sample")
    print_json({**cal.row(), "calls": run["calls"], "seconds": run["seconds"], "path": run["path"]})
