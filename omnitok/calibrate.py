"""`omnitok calibrate`: fit the offline Claude estimate to the provider's own counts of the user's
texts, and measure it (omnitok.calibration holds the estimator, the file and the store).

1. Draw the sample: every non-empty text of the records is put in its stratum (prose, code,
   numbers, or its non-Latin script: calibration.stratum) and kept by reservoir sampling (seeded),
   `sample` texts in all, shared out equally between the strata present (a stratum with fewer
   texts gives its share to the others).
2. Count it with the provider's count API exactly as `count --online` counts a text (the
   provider classes of omnitok.remote: Anthropic count_tokens or Bedrock CountTokens, credentials
   and base URLs from the same environment variables, the message framing measured and taken away
   by claude_text, answers checked by http.plausible; retries honour retry-after). Every HTTP call,
   retries and framing probes included, is taken from a budget of `max_calls`
   (omnitok.remote.budget): the call past it is never sent; the texts counted by then are used if
   there are enough of them (MIN_TEXTS).
3. Fit and measure: calibration.fit on all counted texts (one fit over the whole sample); the
   error figures come from k-fold cross-validation (each text estimated by a fit without it).
4. Write the calibration into the store (whole or not at all).
"""

from __future__ import annotations

import contextvars
import random
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone

from . import calibration
from .errors import RemoteError, UpstreamLimitError, UsageError

MIN_TEXTS = 20  # fewer counted texts cannot be split into folds that say anything
DEFAULT_SAMPLE = 600  # 200 missed the p95 goal for 2 of 3 hidden tokenizers (benchmarks/RESULTS-calibrate.md)


def provider_for(model: str):
    """(the provider class, the id it is sent) for a Claude id; a usage error for anything else."""
    from .families import family, resolve

    res = resolve(model)
    if res.family != "claude":
        raise UsageError(
            f"calibrate fits the offline Claude estimate; {model!r} is a {res.family} model "
            "(Anthropic and Bedrock Claude ids only)"
        )
    fam = family("claude")
    return fam.provider(res), fam.provider_model(res)


def draw(texts: Iterable[str], size: int, seed: int = 0) -> list[tuple[str, str]]:
    """(stratum, text) pairs: a stratified sample of `size` non-empty texts, in a stable order."""
    rnd = random.Random(seed)
    pools: dict[str, list[str]] = {s: [] for s in calibration.STRATA}
    seen = dict.fromkeys(calibration.STRATA, 0)

    def keep(chunk: list[str]) -> None:
        for s, text in zip(calibration.strata_of(chunk), chunk, strict=True):
            seen[s] += 1
            pool = pools[s]
            if len(pool) < size:
                pool.append(text)
            else:
                j = rnd.randrange(seen[s])
                if j < size:
                    pool[j] = text

    chunk: list[str] = []
    for text in texts:
        if text and text.strip():
            chunk.append(text)
            if len(chunk) >= 1024:
                keep(chunk)
                chunk = []
    keep(chunk)
    share = dict.fromkeys(calibration.STRATA, 0)
    left = size
    open_ = [s for s in calibration.STRATA if pools[s]]
    while left and open_:  # equal shares; a small stratum's rest goes to the others
        each = max(1, left // len(open_))
        for s in list(open_):
            take = min(each, len(pools[s]) - share[s], left)
            share[s] += take
            left -= take
            if share[s] == len(pools[s]):
                open_.remove(s)
            if not left:
                break
    out = []
    for s in calibration.STRATA:
        rnd.shuffle(pools[s])
        out += [(s, t) for t in pools[s][: share[s]]]
    return out


def count_online(
    provider,
    texts: list[str],
    max_calls: int,
    concurrency: int = 4,
    progress: Callable[[int], None] | None = None,
) -> tuple[list[int | None], int, str | None]:
    """Each text's count from `provider` (None where none came), the HTTP calls made, and why the
    counting stopped early (None when it did not). Calls past `max_calls` are never sent."""
    from .remote import budget
    from .remote.http import plausible

    allowance = budget.Budget(max_calls)  # every HTTP attempt takes one (remote/http.py)
    token = budget._current.set(allowance)  # as budget.fresh does for a server's request
    try:
        ctx = contextvars.copy_context()  # each call runs in a copy: the budget goes with it
    finally:
        budget._current.reset(token)
    results: list[int | None] = [None] * len(texts)
    stop: list[str] = []

    def one(i: int) -> None:
        if stop:
            return
        try:
            results[i] = plausible(provider.name, texts[i], provider.count_one(texts[i]))
        except UpstreamLimitError:
            stop.append(f"--max-calls {max_calls} reached (retries and framing probes count as calls)")
        except RemoteError as e:
            stop.append(str(e))
            if e.status in (None, 400, 401, 403, 404):  # unreachable, or a request or key it refuses
                raise
        if progress is not None:
            progress(1)

    pool = ThreadPoolExecutor(max(1, concurrency))
    try:
        futures = [pool.submit(ctx.copy().run, one, i) for i in range(len(texts))]
        first_error = None
        for f in futures:
            exc = f.exception()
            if exc is not None and first_error is None:
                first_error = exc
    except BaseException:  # a Ctrl-C: the calls not yet sent are not sent (a pool sends them all)
        stop.append("interrupted")
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown()
    counted = sum(1 for r in results if r is not None)
    if first_error is not None and counted < MIN_TEXTS:
        raise first_error
    return results, allowance.used, (stop[0] if stop else None)


def calibrate(
    model: str,
    texts: Iterable[str],
    sample: int = DEFAULT_SAMPLE,
    max_calls: int | None = None,
    seed: int = 0,
    concurrency: int = 4,
    timeout: float = 30.0,
    retries: int = 4,
    engine: str = "auto",
    progress: Callable[[int], None] | None = None,
    warn: Callable[[str], None] | None = None,
) -> tuple[calibration.Calibration, dict]:
    """Calibrate `model` on `texts`; (the calibration, written into the store, and a run report:
    calls made, seconds, why it stopped early)."""
    if sample < MIN_TEXTS:
        raise UsageError(f"--sample must be at least {MIN_TEXTS}, not {sample}")
    max_calls = 2 * sample + 2 if max_calls is None else max_calls
    room = max_calls - 2  # the framing probes: at most one per variant (claude_text)
    if room < MIN_TEXTS:
        raise UsageError(
            f"--max-calls {max_calls} leaves room for {max(0, room)} texts after the 2 framing probes; "
            f"at least {MIN_TEXTS} are needed"
        )
    cls, sent_as = provider_for(model)
    missing = cls.available()
    if missing:
        raise UsageError(f"calibrate counts through {cls.name}'s count API and needs its credentials: {missing}")
    from .remote.http import HttpPolicy

    drawn = draw(texts, min(sample, room), seed)
    if len(drawn) < MIN_TEXTS:
        raise UsageError(f"the input holds {len(drawn)} non-empty texts; a calibration needs at least {MIN_TEXTS}")
    provider = cls(sent_as, HttpPolicy(timeout=timeout, retries=retries))
    started = time.monotonic()
    strata = [s for s, _ in drawn]
    texts_ = [t for _, t in drawn]
    counts, calls, stopped = count_online(provider, texts_, max_calls, concurrency, progress)
    seconds = time.monotonic() - started
    keep = [i for i, n in enumerate(counts) if n]
    if len(keep) < MIN_TEXTS:
        raise RemoteError(
            cls.name, f"only {len(keep)} of {len(drawn)} texts were counted ({stopped}); at least {MIN_TEXTS} needed"
        )
    if stopped and warn is not None:
        warn(f"calibrate: {len(keep)} of {len(drawn)} sampled texts counted: {stopped}")
    feats = calibration.Featurizer(engine)
    x, ids, owner, _ = feats.features([texts_[i] for i in keep])
    ys = [counts[i] for i in keep]
    kinds = [strata[i] for i in keep]
    errors = calibration.cross_errors(x, ids, owner, ys, kinds)
    band = calibration.band_of(errors)
    measured = {
        "method": f"{calibration.FOLDS}-fold cross-validation (each text estimated by weights fitted without it)",
        **calibration.summary(errors, band),
        "by_stratum": {
            s: calibration.summary([e for e, k in zip(errors, kinds, strict=True) if k == s], band)
            for s in calibration.STRATA
            if s in kinds
        },
    }
    fitted = calibration.fit(x, ids, owner, ys)
    created = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    sample_info = {
        "texts": len(keep),
        "by_stratum": {s: kinds.count(s) for s in calibration.STRATA},
        "calls": calls,
        "seed": seed,
    }
    cal = calibration.build(sent_as, cls.name, fitted, measured, sample_info, created)
    path = calibration.save(cal)
    return cal, {"path": str(path), "calls": calls, "seconds": round(seconds, 3), "stopped": stopped}
