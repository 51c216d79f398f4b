"""Bundle recipes: named sets of models (TOML) with optional pinned hub revisions."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import UsageError


@dataclass(frozen=True)
class Recipe:
    name: str
    models: list[str]
    description: str = ""
    revisions: dict[str, str] = field(default_factory=dict)
    local_dirs: dict[str, str] = field(default_factory=dict)  # model id -> directory
    calibrations: list[str] = field(default_factory=list)  # ids in the calibration store (omnitok calibrate)


def recipe_dirs() -> list[Path]:
    """Where named recipes live: the repository's bundles/ (development) and the installed copy."""
    here = Path(__file__).resolve()
    return [here.parents[2] / "bundles", Path(sys.prefix) / "share" / "omnitok" / "bundles"]


def available() -> dict[str, Path]:
    out: dict[str, Path] = {}
    for d in recipe_dirs():
        if d.is_dir():
            for p in sorted(d.glob("*.toml")):
                out.setdefault(p.stem, p)
    return out


def load_recipe(name_or_path: str) -> Recipe:
    path = Path(name_or_path)
    if not (path.suffix == ".toml" and path.is_file()):
        known = available()
        if name_or_path not in known:
            raise UsageError(f"no recipe {name_or_path!r}; known: {', '.join(known) or 'none'} (or give a .toml path)")
        path = known[name_or_path]
    try:
        import tomllib
    except ImportError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, OSError) as e:
        raise UsageError(f"{path}: {e}") from None
    models = data.get("models")
    if not isinstance(models, list) or not all(isinstance(m, str) for m in models) or not models:
        raise UsageError(f"{path}: 'models' must be a non-empty list of model ids")
    calibrations = data.get("calibrations", [])
    if not isinstance(calibrations, list) or not all(isinstance(c, str) for c in calibrations):
        raise UsageError(f"{path}: 'calibrations' must be a list of calibration ids")
    return Recipe(
        name=str(data.get("name", path.stem)),
        models=models,
        description=str(data.get("description", "")),
        revisions=dict(data.get("revisions", {})),
        local_dirs=dict(data.get("local_dirs", {})),
        calibrations=calibrations,
    )
