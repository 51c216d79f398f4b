"""Calibrations of an offline estimate against a provider's own counts (`omnitok calibrate`).

A calibration is a small JSON file for one model: the weights of a linear estimator over features
of local tokenizations, fitted to counts the provider's count API gave for a sample of the user's
own texts, and what that estimator measured on texts it was not fitted on. Offline counts for the
model then use it (omnitok.families.claude), with the measured error as their `error_band`.

The estimator (`ESTIMATOR`). Every character of a text is in one of the classes of `CLASSES`
(Latin letters, digits, punctuation, white space, a class per non-Latin script, symbols); a token
of a local tokenization is in the class of its first character that is not a space (a token that
starts inside a character, a byte-level piece of it, in its predecessor's). The features
(`FEATURES`) of a text are its o200k_base tokens per class, its cl100k_base tokens per class, its
characters per class, its white-space runs, line breaks, ASCII words, runs of non-ASCII
characters, code and markup characters, each base's tokens by rank (`RANK_EDGES`: a late merge is
a rare piece, the likeliest to be cut differently by a vocabulary of another size), and a
constant. Its estimate is the dot product of those
features with one vector of weights, plus, for each of its tokens of either vocabulary, that
token's correction (`token_deltas`: what a token of the sample turned into, beyond its class's
weight).
How many tokens a piece of text becomes differs most between scripts and, within one, between
languages; per-script token counts of two vocabularies say the first, the token corrections the
second (Bulgarian and Ukrainian share a script, not their words).

The fit (`fit`): least squares on the relative error (each text weighted by 1 / its true count),
over the whole sample at once (scripts share the weights of punctuation, digits and white space;
a fit per content type starves the small ones), ridge-regularised toward a prior of "one token
per o200k_base token": the weights in standardised units with RIDGE, the token corrections with
RIDGE_TOKENS (a correction moves only as far as the texts holding the token pull it). Solved in
its dual form (a system of one equation per text). Texts are sampled stratified by content type
and by script (`STRATA`), so that every script of the corpus is in the sample.

What is measured (`cross_errors`, `summary`): k-fold cross-validation over the sample, stratified, so that each
text is estimated by weights fitted without it; the relative errors |estimate - true| / true give
the median and the p95; `error_band` is a 90% upper confidence bound of the p95 (an order
statistic, `band_of`), so the band still covers 95% of texts with 90% confidence on a fresh sample
of the same corpus; `coverage` is the share of the held-out texts inside the band.

The store: `$OMNITOK_HOME/assets/calibrations/<id>.json`, the asset store that bundles install
into (so `bundle install` of a bundle made with `--calibration ID` puts it where counting looks).
Files are written whole (a temporary file renamed) and read through `parse`, which refuses
anything but this schema (a file of an earlier format version is refused with one line saying to
calibrate again).
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import os
import re
import tempfile
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from ..errors import AssetError, UsageError
from .estimator import (
    DELTA_MIN,
    FOLDS,
    RIDGE,
    RIDGE_TOKENS,
    Model,
    band_of,
    cross_errors,
    fit,
    folds,
    prior,
    quantile,
    summary,
)
from .features import (
    BASES,
    CLASSES,
    FEATURES,
    OFFSETS,
    RANGES,
    RANK_EDGES,
    SCRIPTS,
    STRATA,
    VOCAB,
    Featurizer,
    byte_stats,
    char_counts,
    classes_of,
    key_of,
    strata_of,
    stratum,
    token_classes,
)

__all__ = [
    "BASES",
    "CLASSES",
    "DELTA_MIN",
    "FEATURES",
    "FOLDS",
    "RANGES",
    "RANK_EDGES",
    "RIDGE",
    "RIDGE_TOKENS",
    "SCRIPTS",
    "STRATA",
    "Calibration",
    "Featurizer",
    "Model",
    "band_of",
    "byte_stats",
    "char_counts",
    "classes_of",
    "cross_errors",
    "fit",
    "folds",
    "for_model",
    "installed",
    "key_of",
    "load",
    "parse",
    "prior",
    "quantile",
    "save",
    "strata_of",
    "stratum",
    "summary",
    "token_classes",
]

FORMAT = "omnitok-calibration"
FORMAT_VERSION = 3
ESTIMATOR = "script-tokens-v3"
MAX_FILE = 1 << 22  # a calibration is tens of KB (mostly its token corrections); more is not one
ID = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,150}")
_TOKEN_ID = re.compile(r"0|[1-9][0-9]{0,6}")


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

    @functools.cached_property
    def estimator(self) -> Model:
        est = self.data["estimator"]
        return Model(
            est["weights"],
            {key_of(b, int(k)): v for b, table in est["token_deltas"].items() for k, v in table.items()},
        )

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


def build(model: str, provider: str, fitted: Model, measured: dict, sample: dict, created: str) -> Calibration:
    body = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model": model,
        "provider": provider,
        "created": created,
        "estimator": {
            "kind": ESTIMATOR,
            "bases": list(BASES),
            "features": list(FEATURES),
            "weights": fitted.weights,
            "token_deltas": {
                b: {str(k - off): v for k, v in sorted(fitted.deltas.items()) if off <= k < off + VOCAB[b]}
                for b, off in zip(BASES, OFFSETS, strict=True)
            },
        },
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
    version = data.get("format_version")
    if version != FORMAT_VERSION or isinstance(version, bool):
        if isinstance(version, int) and not isinstance(version, bool) and 0 < version < FORMAT_VERSION:
            _bad(source, f"format_version {version}, an earlier omnitok's; run omnitok calibrate again")
        _bad(source, f"format_version {version!r} is not {FORMAT_VERSION}")
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
    if set(est) != {"kind", "bases", "features", "weights", "token_deltas"}:
        _bad(source, "estimator must hold kind, bases, features, weights and token_deltas")
    if est["features"] != list(FEATURES) or est["bases"] != list(BASES):
        _bad(source, "estimator.features / bases are not this omnitok's")
    weights = est["weights"]
    if not isinstance(weights, list) or len(weights) != len(FEATURES):
        _bad(source, f"estimator.weights must hold {len(FEATURES)} numbers")
    for i, x in enumerate(weights):
        _number(source, f"estimator.weights[{i}]", x, -1e6, 1e6)
    deltas = est["token_deltas"]
    if not isinstance(deltas, dict) or set(deltas) != set(BASES):
        _bad(source, f"estimator.token_deltas must hold a table per base ({', '.join(BASES)})")
    for b, table in deltas.items():
        if not isinstance(table, dict):
            _bad(source, f"estimator.token_deltas.{b} must map token ids to numbers")
        for k, v in table.items():
            if not _TOKEN_ID.fullmatch(k) or int(k) >= VOCAB[b]:
                _bad(source, f"estimator.token_deltas.{b}: {k[:20]!r} is not a token id")
            _number(source, f"estimator.token_deltas.{b}[{k}]", v, -1e3, 1e3)
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
    from ..assets.store import asset_store

    return asset_store() / "calibrations"


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
            from ..notices import warn_once

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
