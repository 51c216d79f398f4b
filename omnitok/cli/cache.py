"""`omnitok cache`: statistics, clearing, where it lives, warming and verifying."""

from __future__ import annotations

import sys

import typer

from .. import errors
from . import _options as opt
from ._output import print_line, print_mapping

EPILOG = """\
Examples:

  omnitok cache path                                  # where the disk cache (L2) and L3 are

  omnitok cache stats --json

  omnitok cache warm -m gpt-4o corpus.jsonl           # pre-fill it from a corpus

  omnitok cache clear --tier l2 -m gpt-4o --yes
"""
PATH_EPILOG = """\
Examples:

  omnitok cache path

  omnitok cache path --l3-url redis://localhost:6379/0
"""
STATS_EPILOG = """\
Examples:

  omnitok cache stats

  omnitok cache stats --json
"""
CLEAR_EPILOG = """\
Examples:

  omnitok cache clear --yes                           # every tier

  omnitok cache clear --tier l2 -m gpt-4o --yes       # only gpt-4o's entries on disk
"""
WARM_EPILOG = """\
Examples:

  omnitok cache warm -m gpt-4o corpus.jsonl

  cat chats.jsonl | omnitok cache warm -m claude-sonnet-4-5
"""
VERIFY_EPILOG = """\
Examples:

  omnitok cache verify -m gpt-4o corpus.jsonl --sample 500   # exit 1 on a mismatch
"""

app = typer.Typer(
    help="The three-tier cache: L1 memory, L2 disk (diskcache), L3 Redis/Valkey.", epilog=EPILOG, no_args_is_help=True
)


def _failed(command: str, failures: dict[str, str], undone: str) -> errors.OmnitokError:
    """The error (exit 1) for tiers that could not do what was asked: `cache clear: l3 not
    cleared: <why>`."""
    from ..api import CacheError

    return CacheError(f"cache {command}: " + "; ".join(f"{tier} {undone}: {why}" for tier, why in failures.items()))


def _report(data: dict, cache, json_out: bool, command: str, undone: str) -> None:
    """Print a cache command's result, with the tiers that failed under "failed"; then, if any
    did, raise _failed for them."""
    failures = cache.failures()
    if failures:
        data["failed"] = failures
    _emit(data, json_out)
    if failures:
        raise _failed(command, failures, undone)


def _existing(command: str, cache_dir: str | None) -> None:
    """Refuse (exit 1, nothing created) a `--cache-dir` that does not exist: stats, clear and
    verify read a cache; they never make one (a mistyped path would otherwise become a new,
    empty cache and a success)."""
    import os

    from .. import api

    if not cache_dir or cache_dir.strip().lower() == "none":
        return
    path = os.path.expanduser(cache_dir)
    if not os.path.isdir(path):
        why = "not a directory" if os.path.exists(path) else "no such directory"
        raise api.CacheError(f"cache {command}: --cache-dir {errors.shown(cache_dir)}: {why}")


def _emit(data: dict, json_out: bool) -> None:
    print_mapping(data, asked_json=json_out)


@app.command("path", epilog=PATH_EPILOG)
def path_cmd(cache_dir: opt.CacheDir = None, l3_url: opt.L3Url = None) -> None:
    """Print where the L2 cache lives (and the L3 URL, password hidden)."""
    from .. import api

    s = api.cache_settings(cache_dir, l3_url)
    print_line(str(s.directory))
    if s.l3_url:
        print_line(api.redact_url(s.l3_url))


@app.command("stats", epilog=STATS_EPILOG)
def stats_cmd(
    json_out: bool = typer.Option(False, "--json", help="JSON instead of a table."),
    cache_dir: opt.CacheDir = None,
    l3_url: opt.L3Url = None,
) -> None:
    """Sizes and the hit/miss counts kept across runs (L2's record, else L3's); exit 1 if a
    configured tier is down or damaged."""
    from .. import api

    _existing("stats", cache_dir)
    cache = api.open_cache_tiers(cache_dir, l3_url)
    try:
        data = api.recorded_cache_stats(cache)
    finally:
        cache.close()
    _report(data, cache, json_out, "stats", "unreadable")


@app.command("clear", epilog=CLEAR_EPILOG)
def clear_cmd(
    tier: str = typer.Option(
        "all", "--tier", help="l1, l2, l3 or all.", autocompletion=opt.complete(("all", "l1", "l2", "l3"))
    ),
    model: str | None = typer.Option(
        None, "--model", "-m", help="Only this model's entries.", show_default=False, autocompletion=opt.complete_model
    ),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
    cache_dir: opt.CacheDir = None,
    l3_url: opt.L3Url = None,
) -> None:
    """Remove cached entries (all, per tier, or per model); exit 1 if a tier asked for could not
    be cleared (down, read-only). A damaged disk cache is removed and made afresh."""
    if tier not in ("l1", "l2", "l3", "all"):
        raise errors.UsageError(f"--tier must be l1, l2, l3 or all, not {tier!r}")
    if tier in ("l2", "all"):
        _existing("clear", cache_dir)
    what = f"{tier} cache entries" + (f" of {model}" if model else "")
    if not yes:
        if not sys.stdin.isatty():
            raise errors.UsageError(f"refusing to clear {what} without --yes (no terminal to ask on)")
        if not typer.confirm(f"Clear {what}?"):
            raise typer.Exit(1)
    from .. import api

    tags = api.cache_tags(model, True) + api.cache_tags(model, False) if model else [None]
    cache = api.open_cache_tiers(cache_dir, l3_url, tier)
    removed: dict[str, int] = {}
    try:
        for tag in dict.fromkeys(tags):
            for t, n in cache.clear(tier, tag).items():
                removed[t] = removed.get(t, 0) + n
    finally:
        cache.close()
    out: dict = {"cleared": removed}
    if cache.rebuilt:
        out["rebuilt"] = cache.rebuilt
    _report(out, cache, True, "clear", "not cleared")


def _engine(model, encoding, files) -> str:
    """count's small-input rule (pybpe for <= 64 KiB) for named files, judged by their size. stdin
    is not read ahead: warm and verify report a usage error or a tier that is down before they
    read any input (a pipe left open would hold the message back)."""
    if not files:
        return "auto"
    from ._small import small_input_engine

    return small_input_engine(model, encoding, files, None)


@app.command("warm", epilog=WARM_EPILOG)
def warm_cmd(
    files: opt.Files = None,
    model: opt.Model = None,
    encoding: opt.Encoding = None,
    field: opt.Field = None,
    online: opt.Online = None,
    cache_dir: opt.CacheDir = None,
    l3_url: opt.L3Url = None,
) -> None:
    """Pre-fill the cache from a corpus (every count is cached, whatever the policy); exit 1 if a
    configured tier could not store them (down, damaged, read-only)."""
    from .. import api

    engine = _engine(model, encoding, files)
    counter = api.Counter(
        model, encoding=encoding, engine=engine, online=online, cache="on", cache_dir=cache_dir, l3_url=l3_url
    )
    cache = counter.cache
    s = cache.settings
    try:
        if s.directory is None and not s.l3_url:
            raise errors.UsageError("cache warm: nothing to warm (--cache-dir none and no L3): memory is not kept")
        if failures := cache.failures():
            raise _failed("warm", failures, "not warmed")
        stream = api.open_inputs(files or [], api.Extractor(opt.split_fields(field), counter.framing))
        n = bad = 0
        for c in api.count_stream(stream, counter, 1):
            bad += c.record.error is not None
            n += 1
        stats = cache.run_stats()
    finally:
        counter.close()
    kept = cache.writes["l2" if s.directory is not None else "l3"]
    out = {"records": n, "errors": bad, "stored": kept, "already_cached": stats["total_hits"]}
    _report(out, cache, True, "warm", "not warmed")
    if bad:
        raise typer.Exit(errors.EXIT_BAD_RECORDS)


@app.command("verify", epilog=VERIFY_EPILOG)
def verify_cmd(
    files: opt.Files = None,
    model: opt.Model = None,
    encoding: opt.Encoding = None,
    field: opt.Field = None,
    sample: int = typer.Option(1000, "--sample", min=1, help="How many records to check."),
    cache_dir: opt.CacheDir = None,
    l3_url: opt.L3Url = None,
) -> None:
    """Re-count a sample of a corpus and compare with what the cache holds; check the disk
    cache's database. Exit 1 on a mismatch, a damaged entry or database, or a tier that is down."""
    import itertools

    from .. import api

    _existing("verify", cache_dir)
    engine = _engine(model, encoding, files)
    cached = api.Counter(model, encoding=encoding, engine=engine, cache="on", cache_dir=cache_dir, l3_url=l3_url)
    fresh = api.Counter(model, encoding=encoding, engine=engine, cache="off")
    stream = api.open_inputs(files or [], api.Extractor(opt.split_fields(field), fresh.framing))
    checked = present = mismatched = 0
    examples = []
    cache = cached.cache
    try:
        integrity = cache.integrity()  # 'ok', or the damage (then a failure of l2)
        if failures := cache.failures():
            raise _failed("verify", failures, "not verified")
        keys = cached.strategy.keys
        for rec in itertools.islice((r for r in stream if r.error is None), sample):
            for text in rec.texts:
                checked += 1
                value = cached.cache.get_many([keys.key(text)])[0]
                if value is None:
                    continue
                present += 1
                truth = fresh.strategy.count(text)
                if truth != value:
                    mismatched += 1
                    if len(examples) < 10:
                        examples.append({"where": rec.where, "cached": value, "recounted": truth})
    finally:
        cached.close()
    # entries that failed their checksum (L2) or tag (L3), or held no count: read as misses by
    # a count, and damage found here
    damaged = sum(cache.stats.get(k, 0) for k in ("l2_errors", "l3_errors", "malformed"))
    out = {"checked": checked, "cached": present, "mismatched": mismatched, "damaged": damaged, "examples": examples}
    if integrity is not None:
        out["l2_integrity"] = integrity
    _report(out, cache, True, "verify", "not verified")
    if mismatched or damaged:
        raise typer.Exit(errors.EXIT_ERROR)
