"""One options object per command: how to count (`CountOptions`), compress (`CompressOptions`) and
validate (`ValidateOptions`).

Each is a frozen dataclass, checked once when it is made (the command line's own checks and
messages: `CountOptions(timeout=0)` fails as `--timeout 0` does) and plain data both ways
(`to_dict()` / `from_dict()` round-trip through JSON), so the command line, the library
(`Counter(model, options=...)`, `Compressor(model, options=...)`, `validate(..., options=...)`),
the Ray path and `engine_core.Spec` carry the same object:

    >>> from omnitok import CountOptions
    >>> opts = CountOptions(engine="tiktoken", cache="off")
    >>> CountOptions.from_dict(opts.to_dict()) == opts
    True

What a call is about (the model id, the texts, a budget, the query) is not an option: it stays an
argument of the call.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any

from .errors import UsageError, shown
from .numbers import checked

if TYPE_CHECKING:
    from .cache import CacheSettings
    from .config import TokenizerSettings

# compress: how contexts are scored; validate: the metrics and where the gate looks.
METHODS = ("combined", "bm25", "dense")
METRICS = ("rouge-l", "compression", "bertscore", "bleu", "chrf")
FAIL_ON = ("any", "mean", "p10")


# The plain types a field may be annotated with: (does a value have it, what the message wants).
# A bool is neither an int nor a float here (True is not 1 retry), and an int is no bool.
_PLAIN_TYPES = {
    "bool": (lambda v: type(v) is bool, "True or False"),
    "int": (lambda v: isinstance(v, int) and not isinstance(v, bool), "a whole number"),
    "float": (lambda v: isinstance(v, (int, float)) and not isinstance(v, bool), "a number"),
    "str": (lambda v: isinstance(v, str), "a string"),
    "None": (lambda v: v is None, "None"),
}


def _check_types(obj) -> None:
    """A TypeError naming the field for the first field of the dataclass `obj` whose value is not
    of its annotated type, where that type is made of bool, int, float, str and None (`str |
    None`); fields of other types (options objects, settings, tuples) are checked by their class.
    Every options object calls this first, so a wrong type is refused before any value check."""
    for f in fields(obj):
        kinds = [_PLAIN_TYPES.get(part.strip()) for part in str(f.type).split("|")]
        if None in kinds:
            continue
        value = getattr(obj, f.name)
        if not any(has(value) for has, _ in kinds):
            wanted = " or ".join(what for _, what in kinds)
            raise TypeError(
                f"{type(obj).__name__}.{f.name} must be {wanted}, not {type(value).__name__} {shown(repr(value), 80, quote=False)}"
            )


@dataclass(frozen=True)
class Weights:
    """How compress's signals mix."""

    passage: float = 0.3  # share of a unit's score that comes from its passage
    dense: float = 0.5  # combined: share of the dense signal (the rest is BM25)
    gamma: float = 0.5  # value per token = score / tokens**gamma

    def __post_init__(self) -> None:
        _check_types(self)


def _check_cache_mode(mode) -> None:
    from .cache import MODES

    if mode not in MODES:
        raise UsageError(f"cache mode must be one of {', '.join(MODES)}, not {mode!r}")


def _known(cls, data, what: str) -> dict:
    """`data` as keyword arguments of `cls`: a mapping whose keys are all its fields."""
    if not isinstance(data, dict):
        raise UsageError(f"{what} options must be a mapping, not {type(data).__name__}")
    names = [f.name for f in fields(cls)]
    unknown = [k for k in data if k not in names]
    if unknown:
        raise UsageError(f"unknown {what} option(s): {', '.join(map(str, unknown))}; known: {', '.join(names)}")
    return dict(data)


def _masked_repr(obj, urls: tuple[str, ...]) -> str:
    """A dataclass's repr with its URL fields' passwords and secret parameters masked (a repr
    ends up in logs and tracebacks; keys never do)."""
    from .redact import redact_url

    parts = []
    for f in fields(obj):
        value = getattr(obj, f.name)
        if f.name in urls and isinstance(value, str):
            value = redact_url(value)
        parts.append(f"{f.name}={value!r}")
    return f"{type(obj).__name__}({', '.join(parts)})"


@dataclass(frozen=True)
class CountOptions:
    """How to count (every `omnitok count` option that is not about input or output).

    `settings` (a TokenizerSettings): its prefer_offline decides when `online` is None, its
    local_model_dirs are searched before the config file's, its provider_keys are used over the
    providers' environment variables. `cache_settings` (a CacheSettings): the cache's tiers and
    limits in place of what the config file, the environment, `cache_dir` and `l3_url` say.
    `to_dict()` carries both as plain data (provider keys included: keep it where keys may go)."""

    encoding: str | None = None
    engine: str = "auto"
    tokenizer: str | None = None
    special_tokens: bool = True
    online: bool | None = None
    strict: bool = False
    concurrency: int = 8
    timeout: float = 30.0
    retries: int = 2
    cache: str = "auto"
    cache_dir: str | None = None
    l3_url: str | None = None
    settings: TokenizerSettings | None = None
    cache_settings: CacheSettings | None = None

    def __post_init__(self) -> None:
        _check_types(self)
        checked("--timeout", self.timeout, 0.1, 3600)
        checked("--retries", self.retries, 0, 100, integer=True)
        _check_cache_mode(self.cache)
        if self.settings is not None:
            from .config import TokenizerSettings

            if not isinstance(self.settings, TokenizerSettings):
                raise TypeError(f"settings must be a TokenizerSettings, not {type(self.settings).__name__}")
        if self.cache_settings is not None:
            from .cache import CacheSettings

            if not isinstance(self.cache_settings, CacheSettings):
                raise TypeError(f"cache_settings must be a CacheSettings, not {type(self.cache_settings).__name__}")

    def __repr__(self) -> str:
        return _masked_repr(self, ("l3_url",))

    def to_dict(self) -> dict:
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        s = self.settings
        if s is not None:
            out["settings"] = {
                "prefer_offline": s.prefer_offline,
                "local_model_dirs": dict(s.local_model_dirs),
                "provider_keys": dict(s.provider_keys),
            }
        c = self.cache_settings
        if c is not None:
            out["cache_settings"] = {
                f.name: (
                    str(getattr(c, f.name)) if f.name == "directory" and c.directory is not None else getattr(c, f.name)
                )
                for f in fields(c)
            }
        return out

    @classmethod
    def from_dict(cls, data: dict) -> CountOptions:
        kwargs = _known(cls, data, "count")
        if isinstance(kwargs.get("settings"), dict):
            from .config import TokenizerSettings

            kwargs["settings"] = TokenizerSettings(**kwargs["settings"])
        if isinstance(kwargs.get("cache_settings"), dict):
            from .cache import CacheSettings

            kwargs["cache_settings"] = CacheSettings(**kwargs["cache_settings"])
        return cls(**kwargs)


def _check_key_env(name, url) -> None:
    """--embedding-key-env: a variable's name that is set, for an --embedding-url."""
    import os
    import re

    from .errors import shown

    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise UsageError(f"--embedding-key-env takes an environment variable's name, not {shown(name)}")
    if not url:
        raise UsageError("--embedding-key-env names the key for --embedding-url; give --embedding-url too")
    if not os.environ.get(name):
        raise UsageError(f"--embedding-key-env {name}: the environment variable {name} is not set")


@dataclass(frozen=True)
class CompressOptions:
    """How to compress (every `omnitok compress` option that is not about input, output or the
    budget). `method` auto: combined if the embedding model is installed (or an embedding URL or
    directory is given), else bm25. Counting is offline and uncached, with `tokenizer` and
    `engine`; `cache` / `cache_dir` are the compressed results' cache. `embedding_key_env` names
    the environment variable whose value is the key sent to `embedding_url` (the name, never the
    key: it must be set when the options are made)."""

    method: str = "auto"
    embedding_url: str | None = None
    embedding_model: str | None = None
    embedding_key_env: str | None = None
    embedding_dir: str | None = None
    gap_marker: str | None = None
    dedup: bool = True
    weights: Weights | None = None
    tokenizer: str | None = None
    engine: str = "auto"
    cache: str = "auto"
    cache_dir: str | None = None

    def __post_init__(self) -> None:
        _check_types(self)
        if self.method != "auto" and self.method not in METHODS:
            raise UsageError(f"--method must be one of auto, {', '.join(METHODS)}; got {self.method!r}")
        if self.weights is not None and not isinstance(self.weights, Weights):
            raise TypeError(f"weights must be a Weights, not {type(self.weights).__name__}")
        _check_cache_mode(self.cache)
        if self.embedding_key_env is not None:
            _check_key_env(self.embedding_key_env, self.embedding_url)

    def __repr__(self) -> str:
        return _masked_repr(self, ("embedding_url",))

    def to_dict(self) -> dict:
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        if self.weights is not None:
            out["weights"] = {f.name: getattr(self.weights, f.name) for f in fields(Weights)}
        return out

    @classmethod
    def from_dict(cls, data: dict) -> CompressOptions:
        kwargs = _known(cls, data, "compress")
        if isinstance(kwargs.get("weights"), dict):
            kwargs["weights"] = Weights(**_known(Weights, kwargs["weights"], "weights"))
        return cls(**kwargs)


def share(name: str, value):
    """A gate on BLEU or chrF: 0 to 1 (sacrebleu's 0-100 score / 100), else a UsageError that says so."""
    try:
        return checked(name, value, 0, 1)
    except UsageError as e:
        raise UsageError(f"{e} (BLEU and chrF run 0-1 here: sacrebleu's score / 100)") from None


def _need_sacrebleu() -> None:
    """BLEU and chrF are sacrebleu's: refused when it does not import, before any pair is read."""
    try:
        import sacrebleu.metrics  # noqa: F401
    except ImportError:
        raise UsageError("BLEU and chrF need sacrebleu (pip install 'omnitok[validate]')") from None


@dataclass(frozen=True)
class ValidateOptions:
    """How to validate (every `omnitok validate` option that is not about input or output):
    the metrics (a gate on a metric turns it on: `scored`), ROUGE-L's stemming, the gates (BLEU's
    and chrF's run 0-1: sacrebleu's sentence score / 100), the BERTScore model and its weighting,
    where the gate looks (`fail_on`), BERTScore's cache, and `count`: how the compression metric
    counts (a CountOptions)."""

    metrics: tuple[str, ...] = ("rouge-l",)
    stem: bool = False
    min_rouge_l: float | None = None
    max_ratio: float | None = None
    min_bertscore: float | None = None
    min_bleu: float | None = None
    min_chrf: float | None = None
    bertscore_model: str | None = None
    idf: bool = False
    rescale: bool = False
    fail_on: str = "any"
    cache: str = "auto"
    cache_dir: str | None = None
    count: CountOptions = field(default_factory=CountOptions)

    def __post_init__(self) -> None:
        _check_types(self)
        metrics = self.metrics
        if isinstance(metrics, str):  # "rouge-l,compression", as --metrics takes them
            metrics = [m.strip() for m in metrics.split(",") if m.strip()]
        if not isinstance(metrics, (list, tuple)):
            raise TypeError(f"ValidateOptions.metrics must be a list of metric names, not {type(metrics).__name__}")
        object.__setattr__(self, "metrics", tuple(metrics))
        for m in self.metrics:
            if not isinstance(m, str):
                raise TypeError(
                    f"ValidateOptions.metrics holds names (strings), not {type(m).__name__} {shown(repr(m), 80, quote=False)}"
                )
            if m not in METRICS:
                raise UsageError(f"unknown metric {m!r}; available: {', '.join(METRICS)}")
        if not self.scored:  # `--metrics ""` and no gate: a run that scores nothing and passes
            raise UsageError(f"--metrics names no metric and no gate asks for one; available: {', '.join(METRICS)}")
        checked("--min-rouge-l", self.min_rouge_l, 0, 1)
        checked("--max-ratio", self.max_ratio, 0)
        checked("--min-bertscore", self.min_bertscore, -1, 1)
        share("--min-bleu", self.min_bleu)
        share("--min-chrf", self.min_chrf)
        if self.fail_on not in FAIL_ON:
            raise UsageError(f"--fail-on must be one of {', '.join(FAIL_ON)}")
        _check_cache_mode(self.cache)
        if isinstance(self.count, dict):
            object.__setattr__(self, "count", CountOptions.from_dict(self.count))
        elif not isinstance(self.count, CountOptions):
            raise TypeError(f"count must be a CountOptions, not {type(self.count).__name__}")
        if {"bleu", "chrf"} & set(self.scored):
            _need_sacrebleu()

    @property
    def scored(self) -> tuple[str, ...]:
        """The metrics scored: `metrics` plus every metric a gate needs, in order, without repeats."""
        gated = (
            ("rouge-l", self.min_rouge_l),
            ("compression", self.max_ratio),
            ("bertscore", self.min_bertscore),
            ("bleu", self.min_bleu),
            ("chrf", self.min_chrf),
        )
        return tuple(dict.fromkeys((*self.metrics, *(m for m, t in gated if t is not None))))

    def to_dict(self) -> dict:
        out: dict[str, Any] = {f.name: getattr(self, f.name) for f in fields(self)}
        out["metrics"] = list(self.metrics)
        out["count"] = self.count.to_dict()
        return out

    @classmethod
    def from_dict(cls, data: dict) -> ValidateOptions:
        kwargs = _known(cls, data, "validate")
        if isinstance(kwargs.get("count"), dict):
            kwargs["count"] = CountOptions.from_dict(kwargs["count"])
        return cls(**kwargs)


OPTIONS = {"count": CountOptions, "compress": CompressOptions, "validate": ValidateOptions}


def build(cls, options=None, changes: dict | None = None):
    """An options object of `cls` from `options` (one of it, a mapping of its fields, or None: the
    defaults) with `changes` (keyword options) applied over it."""
    if options is None:
        return cls(**(changes or {}))
    if isinstance(options, dict):
        options = cls.from_dict(options)
    elif not isinstance(options, cls):
        raise TypeError(f"options must be a {cls.__name__}, not {type(options).__name__}")
    if changes:
        from dataclasses import replace

        options = replace(options, **changes)  # an unknown keyword: TypeError, as without options
    return options
