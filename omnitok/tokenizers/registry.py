"""Engine discovery: built-in engines are registered in the `omnitok.engines` entry-point group
the same way a third-party plugin is; --engine NAME scans the group for names not built in."""

from __future__ import annotations

import functools

from ..errors import UsageError

# Preference order for --engine auto.
AUTO_ORDER = ("gigatoken", "tiktoken")


def builtin_engines() -> dict[str, type]:
    from . import engines, pybpe

    return {"gigatoken": engines.GigatokenEngine, "tiktoken": engines.TiktokenEngine, "pybpe": pybpe.PyBpeEngine}


@functools.cache
def engine_classes() -> dict[str, type]:
    """Built-in engines plus those of plugins (the entry points are scanned here, on demand)."""
    from importlib import metadata

    found = {ep.name: ep for ep in metadata.entry_points(group="omnitok.engines")}
    return {**{name: ep.load() for name, ep in found.items()}, **builtin_engines()}


def engine_class(name: str) -> type:
    classes = builtin_engines()
    if name not in classes:
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
    classes = builtin_engines()
    names = [n for n in AUTO_ORDER if n in classes]
    for name in names:
        if classes[name].supports(spec):
            return classes[name]
    raise UsageError(f"no engine can load {spec.name}")
