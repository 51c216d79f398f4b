"""The model families and their registry: which family a model id belongs to, in what order the
families are asked, and the one function that resolves an id.

One module per family (openai.py, claude.py, gemini.py, hf.py) owns its id table, chat framing,
offline strategy and online provider, behind the `Family` interface of base.py; heuristic.py is the
estimate they step down to. Families are registered in the `omnitok.families` entry-point group;
the built-in ones are registered there exactly as a third-party plugin is (pyproject.toml, which
names them by this package: `omnitok.families:OpenAIFamily`). For start-up time the core reads its
own four from BUILTIN and scans the entry points (tens of ms with many packages installed) only for
an id none of the built-in families with specific ids claims, before the Hugging Face `org/name`
catch-all; so a plugin can add ids but not take over gpt-4o or claude-*.
"""

from __future__ import annotations

import difflib
import functools

from ..errors import UnknownModelError, UsageError
from .base import BundleFiles, Family, Resolution, check_id, not_exact
from .claude import ClaudeFamily
from .gemini import GeminiFamily
from .hf import HFFamily
from .openai import OpenAIFamily, for_encoding

__all__ = [
    "BUILTIN",
    "BundleFiles",
    "DEFAULT_MODEL",
    "ClaudeFamily",
    "Family",
    "GeminiFamily",
    "HFFamily",
    "OpenAIFamily",
    "Resolution",
    "builtin_families",
    "check_id",
    "default_framing",
    "families",
    "family",
    "for_encoding",
    "not_exact",
    "plugin_families",
    "resolution_order",
    "resolve",
    "suggest",
]

DEFAULT_MODEL = "gpt-4o"

BUILTIN = {"openai": OpenAIFamily, "claude": ClaudeFamily, "gemini": GeminiFamily, "hf": HFFamily}

CATCH_ALL_ORDER = 90  # families at or past this order (the HF org/name rule) go after plugins


@functools.cache
def builtin_families() -> tuple[Family, ...]:
    return tuple(sorted((cls() for cls in BUILTIN.values()), key=lambda f: (f.order, f.name)))


@functools.cache
def plugin_families() -> tuple[Family, ...]:
    """Families other packages register in the `omnitok.families` entry-point group. Scanning
    entry points costs tens of ms, so it happens only when no built-in family claims an id."""
    from importlib import metadata

    eps = [ep for ep in metadata.entry_points(group="omnitok.families") if ep.name not in BUILTIN]
    return tuple(sorted((ep.load()() for ep in eps), key=lambda f: (f.order, f.name)))


def resolution_order(include_plugins: bool = True):
    """Built-in families that match specific ids, then plugins, then the Hugging Face catch-all."""
    first = [f for f in builtin_families() if f.order < CATCH_ALL_ORDER]
    last = [f for f in builtin_families() if f.order >= CATCH_ALL_ORDER]
    yield from first
    if include_plugins:
        yield from plugin_families()
    yield from last


def families() -> tuple[Family, ...]:
    """All families, in resolution order."""
    return tuple(resolution_order())


def family(name: str) -> Family:
    for fam in builtin_families():
        if fam.name == name:
            return fam
    for fam in plugin_families():
        if fam.name == name:
            return fam
    raise UsageError(f"no model family {name!r} (known: {', '.join(f.name for f in families())})")


def rank_files_only(res: Resolution) -> bool:
    """Whether a resolved model is counted offline from OpenAI rank files alone (OpenAI's models;
    Claude's estimate, o200k scaled): what pybpe reads, no engine to build. Its family says which
    files it counts with (what a bundle of it carries: `Family.bundle_files`)."""
    files = family(res.family).bundle_files(res)
    return bool(files) and all(f.kind == "tiktoken" for f in files)


def resolve(model: str) -> Resolution:
    """Map a model id to its family and what that family loads; raise UnknownModelError.

    Families are asked in order: OpenAI, Claude, Gemini, plugins (omnitok.families entry points,
    scanned only when reached), then the Hugging Face org/name catch-all. An empty id is a
    UsageError, never the default model: the caller picks the default for an absent one (None);
    so is an id no URL or path may hold (base.check_id), before any family sees it.
    """
    if not model or not model.strip():
        raise UsageError("model id is empty", hint="leave the model out for the default ($OMNITOK_MODEL, else gpt-4o)")
    check_id(model)
    for fam in resolution_order():
        res = fam.resolve(model)
        if res is not None:
            return res
    raise UnknownModelError(model, suggest(model.strip()))


# Words of model ids a family matches by pattern (Claude's), beside the words of the listed ids.
_PATTERN_WORDS = ("claude", "opus", "sonnet", "haiku", "instant")


def suggest(name: str, n: int = 3) -> list[str]:
    """Ids close to a near-miss, for the unknown-model error: the id with each misspelled word
    put right, when that resolves (`claud-sonnet-4-5` -> `claude-sonnet-4-5`: Claude's ids are
    patterns, so no list holds them), then the listed ids nearest to it (never a pattern's
    description)."""
    names = [c.rstrip("-.") for fam in families() for c in fam.names()]
    candidates = list(dict.fromkeys(c for c in names if not any(ch in c for ch in "*, ")))
    out = difflib.get_close_matches(name, candidates, n=n, cutoff=0.5)
    fixed = _respelled(name, candidates)
    if fixed is not None:
        out = [fixed, *(c for c in out if c != fixed)]
    return out[:n]


def _respelled(name: str, ids: list[str]) -> str | None:
    """`name` with each alphabetic word that is no model-id word replaced by the closest one, if
    that changes it and the result resolves; else None."""
    words = set(_PATTERN_WORDS)
    for i in ids:
        words.update(w for w in i.replace(".", "-").split("-") if w.isalpha())
    parts = name.split("-")
    for k, part in enumerate(parts):
        if part.isalpha() and part.lower() not in words:
            close = difflib.get_close_matches(part.lower(), sorted(words), n=1, cutoff=0.75)
            if close:
                parts[k] = close[0]
    fixed = "-".join(parts)
    if fixed == name:
        return None
    try:
        check_id(fixed)
        for fam in resolution_order():
            if fam.name != "hf" and fam.resolve(fixed) is not None:  # (any org/name is an HF id)
                return fixed
    except Exception:  # noqa: BLE001 - a candidate that does not resolve is no suggestion
        return None
    return None


def default_framing():
    """The framing of a family that names none (Family.framing returned None): OpenAI's documented
    per-message rule, which most chat APIs' counts follow."""
    from .openai import OpenAIFraming

    return OpenAIFraming()
