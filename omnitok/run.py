"""The run driver: records through one stage (count, compress, validate) under an error policy, to
result rows and one `Outcome`. Every front end runs its records through here and derives its
answer from the Outcome in one place: the exit code (`Outcome.exit_code`, the command line and the
Ray summary), the HTTP status (omnitok serve: a run stopped at a bad record is an InputError), the
Python result. The library never prints: a front end that tells people about skipped records as
they happen passes `notify`.

Exit codes, when several apply the first wins: 1 (stopped at a bad record or file), 5 (--strict:
not exact; raised as NotExactError while counting), 6 (a quality gate failed), 4 (bad records
skipped or recorded), 3 (over --max-tokens), else 0.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from . import errors

ON_ERROR = ("stop", "skip", "record")


class ErrorPolicy:
    """`--on-error` (`on_error`): what a bad record does to the run. stop: the run ends at it;
    skip: it is left out (and `notify` hears of it); record: it gets an error row where the output
    holds one (else `notify` hears of it too)."""

    def __init__(self, mode: str, notify: Callable[[str], None] | None = None, name: str = "--on-error"):
        if mode not in ON_ERROR:  # `name`: what the caller calls the setting (`on_error` in Python, JSON)
            raise errors.UsageError(f"{name} must be stop, skip or record, not {errors.shown(mode)}")
        self.mode = mode
        self.notify = notify
        self.count = 0
        self.stopped: Stop | None = None

    def keeps_rows(self) -> bool:
        """Whether bad records get an error row in the output (`record`)."""
        return self.mode == "record"

    def bad(self, where: str, reason: str, recorded: bool = False, more: bool = True, at=None) -> bool:
        """Note a bad record at `where`; True if the run goes on past it. `recorded`: the output
        holds an error row with the reason. `more`: whether input follows it (else a stop message
        offers no --on-error hint: it could not help). `at`: its (source, line), for InputError."""
        self.count += 1
        if self.mode == "stop":
            self.stopped = Stop(where, reason, more, *(at or (where, None)))
            return False
        if self.notify is not None and (self.mode == "skip" or not recorded):
            self.notify(f"{where}: {reason}")
        return True


@dataclass(frozen=True)
class Stop:
    """The bad record a run stopped at: where, why, whether input followed it, its source and line."""

    where: str
    reason: str
    more: bool
    source: str
    line: int | None

    def __str__(self) -> str:
        return f"{self.where}: {self.reason}"


@dataclass
class Outcome:
    """What one run did, whatever ran it. `records`: records in (bad ones included, up to where a
    run stopped); `done`: those with a result (counted, compressed, scored); `errors`: bad records;
    `over_limit`: results over --max-tokens; `gate_failed`: a quality gate failed; `stopped`: the
    bad record the run stopped at."""

    on_error: str = "stop"
    records: int = 0
    done: int = 0
    errors: int = 0
    over_limit: int = 0
    gate_failed: bool = False
    stopped: Stop | None = None
    totals: dict = field(default_factory=dict)  # the stage's own totals (compress: tokens in and out)

    @classmethod
    def of(cls, policy: ErrorPolicy, done: int, **more) -> Outcome:
        return cls(policy.mode, done + policy.count, done, policy.count, stopped=policy.stopped, **more)

    def input_error(self) -> errors.InputError:
        """The stop as an exception (the server's answer, the Python API's raise)."""
        assert self.stopped is not None
        return errors.InputError(self.stopped.source, self.stopped.line, self.stopped.reason)

    @property
    def exit_code(self) -> int:
        """The command line's exit code, in the documented order (module docstring)."""
        if self.stopped is not None:
            return errors.EXIT_ERROR
        if self.gate_failed:
            return errors.EXIT_GATE_FAILED
        if self.errors:
            return errors.EXIT_BAD_RECORDS
        if self.over_limit:
            return errors.EXIT_OVER_LIMIT
        return errors.EXIT_OK


class RowSink:
    """Count results as row dicts in memory, as `omnitok count --format jsonl` writes them (the
    server's and the Python API's batch answers)."""

    carries_errors = True

    def __init__(self, meta: dict, with_source: bool = False):
        from .io.writers import Sink

        self._rows = Sink(None, meta, with_source)
        self.rows: list[dict] = []

    def result(self, c) -> None:
        self.rows.append(self._rows.row(c))

    def results(self, run) -> None:
        for c in run.counted():
            self.result(c)

    def error(self, c) -> None:
        self.rows.append(self._rows.error_row(c))

    def close(self) -> None:
        pass


def count(stream, counter, policy: ErrorPolicy, stats, sink=None, *, jobs: int | None = 1, progress=None) -> Outcome:
    """Count a stream of records (`omnitok.api.open_inputs`) with `counter` into `sink` (a writer
    of omnitok.io.writers, a RowSink, or None: totals only) and `stats` (a Summary)."""
    from .pipeline import count_records
    from .records import CountedRun

    several = len(getattr(stream, "paths", ())) > 1
    for c in count_records(stream, counter.strategy, jobs, progress, runs=True):
        if type(c) is CountedRun:  # plain results counted in workers, as columns
            stats.add_run(c)
            if sink is not None:
                sink.results(c)
            continue
        rec = c.record
        if rec.error is not None:
            stats.add_error(f"{rec.where}: {rec.error}")
            recorded = policy.keeps_rows() and sink is not None
            # --on-error can only help when input follows this record
            more = rec.line is not None or several
            if not policy.bad(rec.where, rec.error, recorded and sink.carries_errors, more, (rec.source, rec.line)):
                break
            if recorded:
                sink.error(c)
            continue
        stats.add(c.tokens, rec, c.meta)
        if sink is not None:
            sink.result(c)
    return Outcome.of(policy, stats.counted, over_limit=stats.over_limit)


def written(out, sink, run: Callable[[], Outcome]) -> Outcome:
    """Run `run` writing to `sink` over the output `out` (omnitok.io.output): the output is
    committed only when the run ended without an exception, did not stop at a bad record and
    the sink closed without error; otherwise an existing file is left as it was."""
    outcome = None
    try:
        outcome = run()
    finally:
        closed = False
        try:
            if sink is not None and outcome is not None:
                sink.close()
            closed = outcome is not None
        finally:
            if out is not None:
                out.close(commit=closed and outcome.stopped is None)
    return outcome


def compress(
    stream,
    compressor,
    policy: ErrorPolicy,
    emit: Callable[[dict], None],
    *,
    error_rows: bool = True,
    min_quality: float | None = None,
    jobs: int | None = 1,
    progress=None,
    **budget,
) -> Outcome:
    """Compress a stream of records (built with a CompressExtractor): each result row (and under
    `record`, each error row, as count's) goes to `emit` in input order; `error_rows`: whether the
    output shows an error row's reason (--format text does not). The outcome's totals: contexts,
    tokens in and out, results below `min_quality` (marked `passed: false`)."""
    from .compression.stream import compress_stream

    several = len(getattr(stream, "paths", ())) > 1
    totals = {"contexts": 0, "tokens_in": 0, "tokens_out": 0, "below": 0}
    for rec, row, err in compress_stream(stream, compressor, jobs, **budget):
        if progress is not None:
            progress()
        where = {"pos": rec.pos, **({"id": rec.id} if rec.id is not None else {})}
        if err is not None:
            more = rec.line is not None or several
            if not policy.bad(rec.where, err, policy.keeps_rows() and error_rows, more, (rec.source, rec.line)):
                break
            if policy.keeps_rows():
                emit({**where, "source": rec.source, "line": rec.line, "error": err})
            continue
        totals["contexts"] += 1
        totals["tokens_in"] += row["original_tokens"]
        totals["tokens_out"] += row["compressed_tokens"]
        if min_quality is not None and row["quality_score"] < min_quality:
            totals["below"] += 1
            row = {**where, **row, "passed": False}
        else:
            row = {**where, **row}
        emit(row)
    return Outcome.of(policy, totals["contexts"], gate_failed=bool(totals["below"]), totals=totals)


def validate(
    pairs: Iterable[tuple], options, policy: ErrorPolicy, counter=None, *, jobs=1
) -> tuple[Outcome, list[dict], dict, list[str]]:
    """Score (pos, id, where, original, compressed, error[, more input follows]) pairs and judge
    them by `options` (a ValidateOptions): (outcome, rows in input order, summary, the gate's
    failure messages)."""
    from .pipeline import ordered_map
    from .validation import score_pair
    from .validation.gates import judge

    chosen = options.scored

    def scored(item):
        orig, comp, err = item[3:6]
        return item, None if err is not None else score_pair(orig, comp, chosen, counter, options.stem)

    rows: list[dict] = []
    texts: list[tuple[str, str]] = []
    for (pos, rid, where, orig, comp, err, *more), scores in ordered_map(scored, pairs, jobs):
        if err is not None:  # `more`: whether input follows a bad pair (default: it may)
            if not policy.bad(where, err, policy.keeps_rows(), more[0] if more else True):
                break
            if policy.keeps_rows():  # the id where it was read, as compress's and count's error rows keep it
                ident = {"id": rid} if rid is not None else {}
                rows.append({"pos": pos, **ident, "where": where, "error": err, "passed": False, "failures": []})
            continue
        rows.append({"pos": pos, **({"id": rid} if rid is not None else {}), "where": where, **scores})
        texts.append((orig, comp))
    if policy.stopped is not None:
        return Outcome.of(policy, len(texts)), rows, {}, []
    summary, gate_fail = judge(rows, texts, options, errors=policy.count)
    return Outcome.of(policy, len(texts), gate_failed=bool(gate_fail)), rows, summary, gate_fail


def records_of(items: Iterable[Any], extractor, source: str) -> Iterator:
    """Records of in-memory items (a text, or a JSON object as a JSONL line holds it), numbered as
    the command line numbers lines: pos from 0, line from 1; a record whose text cannot be taken
    out of it carries the reason, as a bad input line does."""
    from .records import LONE_SURROGATE, Record, lone_surrogate

    for i, obj in enumerate(items):
        if lone_surrogate(obj):  # read by a parser that keeps them (the server's): refused as the CLI's reader does
            yield Record(i, source, i + 1, error=f"invalid JSON: {LONE_SURROGATE}", raw=None)
            continue
        yield extractor.record(i, source, i + 1, obj)
