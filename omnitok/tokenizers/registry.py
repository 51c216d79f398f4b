"""Engine discovery: built-in engines register through the `omnitok.engines` entry-point group,
the same way a third-party plugin does."""

from __future__ import annotations

import functools
from importlib.metadata import entry_points

from ..errors import UsageError

# Preference order for --engine auto.
AUTO_ORDER = ("gigatoken", "tiktoken")


@functools.cache
def engine_classes() -> dict[str, type]:
    found = {}
    for ep in entry_points(group="omnitok.engines"):
        found[ep.name] = ep
    if not found:  # running from a source tree that was never installed
        from . import engines

        return {"gigatoken": engines.GigatokenEngine, "tiktoken": engines.TiktokenEngine}
    return {name: ep.load() for name, ep in found.items()}


def engine_class(name: str) -> type:
    classes = engine_classes()
    if name not in classes:
        raise UsageError(f"unknown engine {name!r}; available: {', '.join(sorted(classes))}, auto")
    return classes[name]


def pick_engine(spec, requested: str = "auto") -> type:
    """The engine class for an encoding: the requested one, or the fastest that supports it."""
    if requested != "auto":
        cls = engine_class(requested)
        if not cls.supports(spec):
            raise UsageError(f"engine {requested!r} cannot load {spec.name}")
        return cls
    classes = engine_classes()
    names = [n for n in AUTO_ORDER if n in classes] + sorted(set(classes) - set(AUTO_ORDER))
    for name in names:
        if classes[name].supports(spec):
            return classes[name]
    raise UsageError(f"no engine can load {spec.name}")
