"""Calibrations of an offline estimate against a provider's own counts (`omnitok calibrate`).

A calibration is a small JSON file for one model: the weights of a linear estimator over features
of a local tokenization, fitted to counts the provider's count API gave for a sample of the user's
own texts, and what that estimator measured on texts it was not fitted on. Offline counts for the
model then use it (omnitok.families.claude), with the measured error as their `error_band`.

The estimator. Each text is put in one of five strata (`stratum`: prose, code, cjk, nonlatin:
other non-Latin scripts, numbers: digits and markup); its features (`FEATURES`) are its o200k_base
and cl100k_base counts, characters, CJK characters, other non-ASCII characters, digits, whitespace
runs, line breaks, punctuation characters, ASCII words and a constant. Its estimate is the dot
product of those features with the weights of its stratum. Weights are fitted by least squares on
the relative error (each text weighted by 1 / its true count), ridge-regularised in standardised
units: first over the whole sample, then per stratum shrunk toward those global weights (a stratum
with fewer than MIN_STRATUM texts keeps the global ones). Two vocabularies disagree in different
ways with a third (o200k splits code and CJK differently from cl100k), and the character classes
say where; measured on held-out texts against real BPE vocabularies in benchmarks/calibrate_bench.py.

What is measured (`measure`): k-fold cross-validation over the sample, stratified, so that each
text is estimated by weights fitted without it; the relative errors |estimate - true| / true give
the median and the p95; `error_band` is a 90% upper confidence bound of the p95 (an order
statistic, `band_of`), so the band still covers 95% of texts with 90% confidence on a fresh sample
of the same corpus; `coverage` is the share of the held-out texts inside the band.

The store: `$OMNITOK_HOME/assets/calibrations/<id>.json`, the asset store that bundles install
into (so `bundle install` of a bundle made with `--calibration ID` puts it where counting looks).
Files are written whole (a temporary file renamed) and read through `parse`, which refuses
anything but this schema.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import tempfile
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .errors import AssetError, UsageError

FORMAT = "omnitok-calibration"
FORMAT_VERSION = 1
ESTIMATOR = "linear-features-v1"
STRATA = ("prose", "code", "cjk", "nonlatin", "numbers")
# Non-ASCII characters by the first byte of their UTF-8 form: (name, first bytes) - scripts that
# tokenizers treat differently get a weight each.
SCRIPTS = (
    ("latin_ext", range(0xC2, 0xCE)),  # U+0080 .. U+037F: Latin-1, Latin Extended, IPA, accents
    ("greek", range(0xCE, 0xD0)),
    ("cyrillic", range(0xD0, 0xD6)),
    ("hebrew_arabic", range(0xD6, 0xE0)),
    ("indic_thai", range(0xE0, 0xE1)),  # U+0800 .. U+0FFF
    ("other_bmp", range(0xE1, 0xE2)),  # U+1000 .. U+1FFF: Georgian, Hangul Jamo, Ethiopic, ...
    ("symbols", range(0xE2, 0xE3)),  # U+2000 .. U+2FFF: punctuation, arrows, box drawing
    ("cjk", range(0xE3, 0xEA)),  # U+3000 .. U+9FFF: kana, CJK ideographs
    ("hangul", range(0xEA, 0xEE)),  # U+A000 .. U+DFFF: Hangul syllables (and Yi)
    ("private_compat", range(0xEE, 0xF0)),  # U+E000 .. U+FFFF
    ("astral", range(0xF0, 0xF5)),  # emoji and other planes
)
FEATURES = (
    "o200k",
    "cl100k",
    "chars",
    "digits",
    "spaces",
    "newlines",
    "punct",
    "words",
    "nonascii_words",
    *(name for name, _ in SCRIPTS),
    "one",
)
BASES = ("o200k_base", "cl100k_base")
MIN_STRATUM = 12  # texts a stratum needs for weights of its own
RIDGE_GLOBAL = 1e-3
RIDGE_STRATUM = 1e-2
FOLDS = 5
MAX_FILE = 1 << 20  # a calibration is a few KB; more is not one
ID = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,150}")

# Byte classes of UTF-8 text: a lookup table over bytes, so that numpy counts a whole batch at once.
DIGIT, SPACE, NEWLINE, PUNCT, LETTER, LEAD, HIGH, LATIN, CODE, MARKUP = (1 << i for i in range(10))
_TABLES = None


def _tables():
    import numpy as np

    t = np.zeros(256, np.uint16)
    for c in range(128):
        ch = chr(c)
        if ch.isdigit():
            t[c] |= DIGIT
        elif ch.isspace():
            t[c] |= SPACE | (NEWLINE if ch == "\n" else 0)
        elif ch.isalpha():
            t[c] |= LETTER
        elif 32 < c < 127:
            t[c] |= PUNCT
        if ch in ";{}()=[]_":
            t[c] |= CODE
        if ch in '<>|"':
            t[c] |= MARKUP
    t[0x80:] |= HIGH  # any byte of a non-ASCII character
    t[0xC0:] |= LEAD  # the first byte of one
    t[0xC3:0xCA] |= LATIN  # U+00C0 .. U+027F: Latin-1 and Latin Extended letters
    script = np.zeros(256, np.int64)
    for i, (_, first) in enumerate(SCRIPTS, 1):
        script[list(first)] = i
    return t, script


# columns of byte_stats
_COLUMNS = (
    "chars",
    "digits",
    "spaces",
    "newlines",
    "punct",
    "words",
    "nonascii_words",
    "latin",
    "code",
    "markup",
    "space_chars",
    "letters",
    *(name for name, _ in SCRIPTS),
)
_C = {name: i for i, name in enumerate(_COLUMNS)}


def byte_stats(texts: Sequence[str]):
    """A numpy array, a row per text, a column per _COLUMNS: characters, digits, whitespace runs,
    line breaks, ASCII punctuation, ASCII words, runs of non-ASCII characters, Latin-extended
    letters, code and markup characters, whitespace characters, ASCII letters, and non-ASCII
    characters per SCRIPTS."""
    import numpy as np

    global _TABLES
    if _TABLES is None:
        _TABLES = _tables()
    table, scripts = _TABLES
    n = len(texts)
    out = np.zeros((n, len(_COLUMNS)))
    encoded = [t.encode("utf-8", "surrogatepass") for t in texts]
    sizes = np.fromiter((len(e) for e in encoded), np.int64, n)
    if not sizes.sum():
        return out
    raw = np.frombuffer(b"".join(encoded), np.uint8)
    cls = table[raw]
    ends = np.cumsum(sizes)
    starts = ends - sizes
    first = np.zeros(len(raw) + 1, bool)
    first[starts] = True  # a text's first byte (the last slot: past the end)
    first = first[:-1]

    full = sizes > 0
    cuts = starts[full]

    def total(mask):  # per text (segments from each non-empty text's first byte; empty ones: 0)
        sums = np.zeros(n, np.int64)
        sums[full] = np.add.reduceat(mask.view(np.uint8), cuts, dtype=np.int64)
        return sums

    def has(flag):
        return (cls & flag) > 0

    def runs(on):
        prev = np.concatenate(([False], on[:-1])) & ~first
        return total(on & ~prev)

    lead = has(LEAD)
    out[:, _C["chars"]] = total(raw < 0x80) + total(lead)
    out[:, _C["digits"]] = total(has(DIGIT))
    out[:, _C["spaces"]] = runs(has(SPACE))
    out[:, _C["newlines"]] = total(has(NEWLINE))
    out[:, _C["punct"]] = total(has(PUNCT))
    out[:, _C["words"]] = runs(has(LETTER))
    out[:, _C["nonascii_words"]] = runs(has(HIGH))
    out[:, _C["latin"]] = total(has(LATIN))
    out[:, _C["code"]] = total(has(CODE))
    out[:, _C["markup"]] = total(has(MARKUP))
    out[:, _C["space_chars"]] = total(has(SPACE))
    out[:, _C["letters"]] = total(has(LETTER))
    script = scripts[raw]
    where = np.flatnonzero(script)
    owner = np.searchsorted(ends, where, side="right")  # the text each of those bytes belongs to
    keys = owner * len(SCRIPTS) + (script[where] - 1)
    per = np.bincount(keys, minlength=n * len(SCRIPTS)).reshape(n, len(SCRIPTS))
    out[:, _C[SCRIPTS[0][0]] :] = per
    return out


def _stratum(row, indented: bool) -> str:
    visible = max(1.0, row[_C["chars"]] - row[_C["space_chars"]])
    non_ascii = sum(row[_C[name]] for name, _ in SCRIPTS if name != "symbols")
    if non_ascii - row[_C["latin"]] > 0.3 * (row[_C["letters"]] + non_ascii):
        return "cjk" if row[_C["cjk"]] + row[_C["hangul"]] > 0.5 * non_ascii else "nonlatin"
    if row[_C["digits"]] > 0.2 * visible or row[_C["markup"]] > 0.08 * visible:
        return "numbers"
    code = row[_C["code"]]
    if code > 0.05 * visible or (indented and code > 0.02 * visible):
        return "code"
    return "prose"


def strata_of(texts: Sequence[str], stats=None) -> list[str]:
    """The stratum of each text (see stratum)."""
    st = byte_stats(texts) if stats is None else stats
    return [_stratum(r, "\n    " in t) for t, r in zip(texts, st.tolist(), strict=True)]


def stratum(text: str) -> str:
    """prose, code, cjk (Chinese, Japanese, Korean), nonlatin (other non-Latin scripts) or numbers
    (digits and markup)."""
    return strata_of([text])[0]


_PICK = [_C[name] for name in FEATURES[2:-1]]


class Featurizer:
    """The features of texts: their o200k_base and cl100k_base counts (the local tokenizers) and
    their byte statistics."""

    def __init__(self, engine: str = "auto"):
        from .tokenizers import load_strategy

        self.bases = [load_strategy(name, engine) for name in BASES]
        self.engine = self.bases[0].engine
        self.fingerprint = "+".join(b.fingerprint for b in self.bases)

    def rows(self, texts: Sequence[str]) -> tuple[list[list[float]], list[str]]:
        """(the features of each text, its stratum)."""
        o200k, cl100k = (b.count_batch(texts) for b in self.bases)
        st = byte_stats(texts)
        picked = st[:, _PICK].tolist()
        rows = [[float(a), float(b), *r, 1.0] for a, b, r in zip(o200k, cl100k, picked, strict=True)]
        return rows, strata_of(texts, st)


# --- fitting ------------------------------------------------------------------------------------


def _solve(rows, ys, ridge: float, prior=None) -> list[float]:
    """Weights minimising sum(((w.x - y) / y)^2) + ridge * |s * (w - prior)|^2, s the features'
    scales (standardised units, so one ridge suits features of any size)."""
    import numpy as np

    x = np.asarray(rows, float)
    y = np.asarray(ys, float)
    xw = x / y[:, None]
    a = xw.T @ xw
    b = xw.T @ np.ones(len(y))
    s = np.sqrt(np.diag(a))
    s[s == 0] = 1.0
    p = np.zeros(len(s)) if prior is None else np.asarray(prior, float) * s
    lhs = a / np.outer(s, s) + ridge * np.eye(len(s))
    v = np.linalg.lstsq(lhs, b / s + ridge * p, rcond=None)[0]
    return [float(w) for w in v / s]


def fit(rows: Sequence[Sequence[float]], ys: Sequence[int], strata: Sequence[str]) -> dict[str, list[float]]:
    """Weights per stratum (every stratum named: a stratum without enough texts gets the global
    weights)."""
    if not rows:
        raise ValueError("nothing to fit")
    glob = _solve(rows, ys, RIDGE_GLOBAL)
    out = {}
    for s in STRATA:
        idx = [i for i, k in enumerate(strata) if k == s]
        if len(idx) >= MIN_STRATUM:
            out[s] = _solve([rows[i] for i in idx], [ys[i] for i in idx], RIDGE_STRATUM, glob)
        else:
            out[s] = list(glob)
    return out


def estimate(weights: dict[str, list[float]], row: Sequence[float], kind: str) -> int:
    """The estimate for one text's features: at least 1 (the text is not empty), and within half
    the smaller and twice the larger of its two vocabularies' counts (a text unlike any of the
    sample is not extrapolated past what some BPE vocabulary gives)."""
    value = sum(w * x for w, x in zip(weights[kind], row, strict=True))
    low, high = 0.5 * min(row[0], row[1]), 2.0 * max(row[0], row[1])
    return max(1, round(min(max(value, low), high)))


def folds(strata: Sequence[str], k: int = FOLDS) -> list[int]:
    """A fold for each text, dealt out stratum by stratum (each fold holds every stratum)."""
    out, seen = [0] * len(strata), dict.fromkeys(STRATA, 0)
    for i, s in enumerate(strata):
        out[i] = seen[s] % k
        seen[s] += 1
    return out


def cross_errors(rows, ys, strata, k: int = FOLDS) -> list[float]:
    """The relative error of each text's estimate by weights fitted on the other folds."""
    fold = folds(strata, k)
    errs = [0.0] * len(ys)
    for f in range(min(k, len(ys))):
        train = [i for i in range(len(ys)) if fold[i] != f]
        test = [i for i in range(len(ys)) if fold[i] == f]
        if not train or not test:
            continue
        w = fit([rows[i] for i in train], [ys[i] for i in train], [strata[i] for i in train])
        for i in test:
            errs[i] = abs(estimate(w, rows[i], strata[i]) - ys[i]) / ys[i]
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


# --- the file -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Calibration:
    data: dict  # the checked JSON

    @property
    def id(self) -> str:
        return self.data["id"]

    @property
    def model(self) -> str:
        return self.data["model"]

    @property
    def error_band(self) -> float:
        return self.data["measured"]["error_band"]

    @property
    def weights(self) -> dict[str, list[float]]:
        return self.data["estimator"]["weights"]

    def row(self) -> dict:
        """What `calibrate --list` shows of it."""
        m = self.data["measured"]
        return {
            "id": self.id,
            "model": self.model,
            "provider": self.data["provider"],
            "created": self.data["created"],
            "texts": self.data["sample"]["texts"],
            "median": m["median"],
            "p95": m["p95"],
            "error_band": m["error_band"],
            "coverage": m["coverage"],
        }


def new_id(model: str, body: dict) -> str:
    """<model, as a file name>-<12 hex digits of the content's sha256>."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", model).strip("-.")[:80] or "model"
    digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:12]
    return f"{slug}-{digest}"


def build(model: str, provider: str, weights: dict, measured: dict, sample: dict, created: str) -> Calibration:
    body = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model": model,
        "provider": provider,
        "created": created,
        "estimator": {"kind": ESTIMATOR, "bases": list(BASES), "features": list(FEATURES), "weights": weights},
        "measured": measured,
        "sample": sample,
    }
    data = {"id": new_id(model, body), **body}
    return Calibration(check(data, "calibration"))


_TOP = {"id", "format", "format_version", "model", "provider", "created", "estimator", "measured", "sample"}
_MEASURED = {"method", "texts", "median", "p95", "error_band", "coverage", "by_stratum"}


def _bad(source: str, what: str):
    raise AssetError(f"{source}: not a valid omnitok calibration ({what})")


def _number(source: str, field: str, value, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        _bad(source, f"{field} must be a finite number")
    if not low <= value <= high:
        _bad(source, f"{field} is outside {low}..{high}")
    return value


def _text(source: str, field: str, value, limit: int = 256) -> str:
    if not isinstance(value, str) or not value or len(value) > limit:
        _bad(source, f"{field} must be text of 1 to {limit} characters")
    if any(unicodedata.category(ch) in ("Cc", "Cf", "Cs") for ch in value):
        _bad(source, f"{field} holds a control character")
    return value


def check(data, source: str) -> dict:
    """`data` when it follows the schema, else an AssetError saying what is wrong."""
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        _bad(source, "no 'format': 'omnitok-calibration'")
    if data.get("format_version") != FORMAT_VERSION or isinstance(data.get("format_version"), bool):
        _bad(source, f"format_version {data.get('format_version')!r} is not {FORMAT_VERSION}")
    if set(data) != _TOP:
        _bad(source, f"fields {sorted(set(data) ^ _TOP)} missing or unknown")
    if not isinstance(data["id"], str) or not ID.fullmatch(data["id"]):
        _bad(source, "id is not [A-Za-z0-9._-]")
    _text(source, "model", data["model"])
    _text(source, "provider", data["provider"], 64)
    _text(source, "created", data["created"], 64)
    est = data["estimator"]
    if not isinstance(est, dict) or est.get("kind") != ESTIMATOR:
        _bad(source, f"estimator.kind is not {ESTIMATOR!r} (written by another omnitok version?)")
    if est.get("features") != list(FEATURES) or est.get("bases") != list(BASES):
        _bad(source, "estimator.features / bases are not this omnitok's")
    weights = est.get("weights")
    if not isinstance(weights, dict) or set(weights) != set(STRATA):
        _bad(source, f"estimator.weights must name the strata {', '.join(STRATA)}")
    for s, w in weights.items():
        if not isinstance(w, list) or len(w) != len(FEATURES):
            _bad(source, f"estimator.weights.{s} must hold {len(FEATURES)} numbers")
        for i, x in enumerate(w):
            _number(source, f"estimator.weights.{s}[{i}]", x, -1e6, 1e6)
    m = data["measured"]
    if not isinstance(m, dict) or not set(m) >= _MEASURED:
        _bad(source, f"measured must hold {', '.join(sorted(_MEASURED))}")
    for key in ("median", "p95", "error_band", "coverage"):
        _number(source, f"measured.{key}", m[key], 0, 1e6)
    _number(source, "measured.texts", m["texts"], 1, 1e9)
    sample = data["sample"]
    if not isinstance(sample, dict) or not isinstance(sample.get("texts"), int):
        _bad(source, "sample.texts must be a whole number")
    return data


def parse(raw: bytes, source: str) -> Calibration:
    if len(raw) > MAX_FILE:
        _bad(source, f"larger than {MAX_FILE} bytes")

    def constant(name):
        raise ValueError(f"{name} is not a JSON value")

    try:
        data = json.loads(raw, parse_constant=constant)
    except (ValueError, RecursionError) as e:
        _bad(source, f"not JSON: {type(e).__name__}")
    return Calibration(check(data, source))


def dumps(cal: Calibration) -> bytes:
    return (json.dumps(cal.data, indent=1, sort_keys=True) + "\n").encode()


# --- the store ----------------------------------------------------------------------------------


def store_dir() -> Path:
    from .assets.store import omnitok_home

    return omnitok_home() / "assets" / "calibrations"


def check_id(cal_id: str) -> str:
    if not isinstance(cal_id, str) or not ID.fullmatch(cal_id):
        raise UsageError(f"{cal_id!r} is not a calibration id (see 'omnitok calibrate --list')")
    return cal_id


def path_of(cal_id: str) -> Path:
    return store_dir() / f"{check_id(cal_id)}.json"


def save(cal: Calibration) -> Path:
    """Into the store, whole or not at all (a temporary file renamed)."""
    d = store_dir()
    try:
        d.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".calibration-", suffix=".part", dir=d)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(dumps(cal))
            os.replace(tmp, d / f"{cal.id}.json")
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as e:
        raise AssetError(f"cannot write the calibration into {d} ({e.strerror or e})") from None
    return d / f"{cal.id}.json"


def load(cal_id: str) -> Calibration:
    path = path_of(cal_id)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise UsageError(f"no calibration {cal_id!r} in {store_dir()} (see 'omnitok calibrate --list')") from None
    except OSError as e:
        raise AssetError(f"cannot read {path} ({e.strerror or e})") from None
    cal = parse(raw, str(path))
    if cal.id != cal_id:
        _bad(str(path), f"its id {cal.id!r} is not its file name's")
    return cal


def installed() -> list[Calibration]:
    """Every valid calibration in the store, oldest first; a damaged one is skipped here (and
    named by --show)."""
    d = store_dir()
    out = []
    try:
        names = sorted(p.name for p in d.iterdir() if p.suffix == ".json" and not p.name.startswith("."))
    except OSError:
        return []
    for name in names:
        try:
            out.append(load(name[: -len(".json")]))
        except (AssetError, UsageError) as e:
            from .notices import warn_once

            warn_once(f"calibration:{d / name}", f"{e.message}; it is not used (omnitok calibrate --show names it)")
    return sorted(out, key=lambda c: (c.data["created"], c.id))


def model_key(model: str) -> str:
    """Ids as a provider is sent them: no litellm-style `anthropic/` prefix."""
    return model.strip().removeprefix("anthropic/")


def for_model(model: str) -> Calibration | None:
    """The newest calibration of `model`, if one is installed."""
    key = model_key(model)
    found = [c for c in installed() if model_key(c.model) == key]
    return found[-1] if found else None
