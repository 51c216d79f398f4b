"""The calibrated estimate's model (weights and token corrections), its fit and its
cross-validated measurement (see omnitok.calibration)."""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass

from .features import FEATURES, NC

RIDGE = 1e-3  # on the weights, in standardised units
RIDGE_TOKENS = 6e-3  # on the token corrections
DELTA_DIGITS = 3  # token corrections are stored rounded to this many decimals
DELTA_MIN = 0.03  # and smaller ones dropped (a file of tens of KB, not hundreds)
FOLDS = 5
TOKEN_BLOCK = 4096  # the fit's token-count matrix is built this many tokens (columns) at a time


@dataclass
class Model:
    """Weights (a value per FEATURES) and token corrections ({token key (key_of): value})."""

    weights: list[float]
    deltas: dict[int, float]

    @functools.cached_property
    def _arrays(self):
        import numpy as np

        w = np.asarray(self.weights, float)
        d = np.zeros(max(self.deltas, default=0) + 1)
        for k, v in self.deltas.items():
            d[k] = v
        return w, d

    def predict(self, x, ids, owner):
        """The raw estimate of each text: features x (rows), its tokens' keys (flat, owner)."""
        import numpy as np

        w, d = self._arrays
        inside = ids < len(d)
        extra = np.bincount(owner[inside], weights=d[ids[inside]], minlength=len(x))
        return x @ w + extra

    def estimate(self, x, ids, owner) -> list[int]:
        """The estimates, whole numbers: at least 1, and within half the smaller and twice the
        larger of the two vocabularies' counts (a text unlike any of the sample is not
        extrapolated past what some BPE vocabulary gives)."""
        import numpy as np

        raw = self.predict(x, ids, owner)
        o, c = x[:, :NC].sum(1), x[:, NC : 2 * NC].sum(1)
        clipped = np.clip(raw, 0.5 * np.minimum(o, c), 2.0 * np.maximum(o, c))
        return [max(1, round(v)) for v in clipped.tolist()]


def prior():
    """One token per o200k_base token."""
    return [1.0 if i < NC else 0.0 for i in range(len(FEATURES))]


def fit(x, ids, owner, ys: Sequence[int], ridge: float = RIDGE, ridge_tokens: float = RIDGE_TOKENS) -> Model:
    """Weights and token corrections minimising
        sum_i ((w.x_i + sum of the corrections of i's tokens - y_i) / y_i)^2
        + ridge * |s * (w - prior)|^2 + ridge_tokens * |corrections|^2
    (s: the features' scales, so one ridge suits features of any size), solved in the dual: an
    n x n system for n texts."""
    import numpy as np

    x = np.asarray(x, float)
    y = np.asarray(ys, float)
    n = len(y)
    if not n:
        raise ValueError("nothing to fit")
    zs = x / y[:, None]
    scale = np.sqrt((zs * zs).sum(0))
    scale[scale == 0] = 1.0
    p = np.asarray(prior())
    r = 1.0 - zs @ p
    m1 = zs / (np.sqrt(ridge) * scale)
    ids = np.asarray(ids, np.int64)
    owner = np.asarray(owner, np.int64)
    vocab, inv = np.unique(ids, return_inverse=True)
    width = len(vocab)
    # the token-count matrix zt (text x token, / y) is sparse: its entries, (text, token, value)
    pair, times = np.unique(owner * width + inv, return_counts=True)
    row, col = pair // width, pair % width
    val = times / y[row]
    gram = np.zeros((n, n))
    for start in range(0, width, TOKEN_BLOCK):  # zt @ zt.T, a block of tokens at a time
        sel = (col >= start) & (col < start + TOKEN_BLOCK)
        block = np.zeros((n, min(TOKEN_BLOCK, width - start)))
        block[row[sel], col[sel] - start] = val[sel]
        gram += block @ block.T
    k = m1 @ m1.T + gram / ridge_tokens + np.eye(n)
    a = np.linalg.solve(k, r)
    w = p + (m1.T @ a) / (np.sqrt(ridge) * scale)
    d = np.bincount(col, weights=val * a[row], minlength=width) / ridge_tokens  # zt.T @ a
    deltas = {int(t): round(float(v), DELTA_DIGITS) for t, v in zip(vocab.tolist(), d.tolist(), strict=True)}
    return Model([float(v) for v in w], {t: v for t, v in deltas.items() if abs(v) >= DELTA_MIN})


def folds(strata: Sequence[str], k: int = FOLDS) -> list[int]:
    """A fold for each text, dealt out stratum by stratum (each fold holds every stratum)."""
    out, seen = [0] * len(strata), {}
    for i, s in enumerate(strata):
        out[i] = seen.get(s, 0) % k
        seen[s] = seen.get(s, 0) + 1
    return out


def _subset(x, ids, owner, rows):
    import numpy as np

    rows = np.asarray(rows)
    where = np.full(len(x), -1)
    where[rows] = np.arange(len(rows))
    keep = where[owner] >= 0
    return x[rows], ids[keep], where[owner[keep]]


def cross_errors(x, ids, owner, ys, strata, k: int = FOLDS) -> list[float]:
    """The relative error of each text's estimate by a model fitted on the other folds."""
    fold = folds(strata, k)
    errs = [0.0] * len(ys)
    for f in range(min(k, len(ys))):
        train = [i for i in range(len(ys)) if fold[i] != f]
        test = [i for i in range(len(ys)) if fold[i] == f]
        if not train or not test:
            continue
        model = fit(*_subset(x, ids, owner, train), [ys[i] for i in train])
        for i, e in zip(test, model.estimate(*_subset(x, ids, owner, test)), strict=True):
            errs[i] = abs(e - ys[i]) / ys[i]
    return errs


def quantile(values: Sequence[float], q: float) -> float:
    """The q-quantile by linear interpolation (numpy's default)."""
    v = sorted(values)
    if not v:
        return 0.0
    pos = q * (len(v) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (pos - lo)


def band_of(errors: Sequence[float], q: float = 0.95, confidence_z: float = 1.2816) -> float:
    """A 90% upper confidence bound of the q-quantile of `errors`: the order statistic at
    n*q + z*sqrt(n*q*(1-q)) (normal approximation of the binomial), the largest error if past it."""
    v = sorted(errors)
    if not v:
        return 0.0
    n = len(v)
    rank = math.ceil(n * q + confidence_z * math.sqrt(n * q * (1 - q)))
    return v[min(n, max(1, rank)) - 1]


def summary(errors: Sequence[float], band: float | None = None) -> dict:
    """median, p95 and the share inside `band` (the band_of the errors when not given)."""
    band = band_of(errors) if band is None else band
    inside = sum(1 for e in errors if e <= band + 1e-12)
    return {
        "texts": len(errors),
        "median": round(quantile(errors, 0.5), 5),
        "p95": round(quantile(errors, 0.95), 5),
        "error_band": round(band, 5),
        "coverage": round(inside / len(errors), 4) if errors else 0.0,
    }
