"""Planning an install: where the store is, and every destination proven inside its root and free
(no file or link on its way, nothing of the other kind there) before anything moves."""

from __future__ import annotations

import os
from pathlib import Path

from ..assets.transactions import Unit, kind_of
from .manifest import inside
from .sources import BundleError


def store_dir() -> Path:
    from ..assets.store import omnitok_home

    return omnitok_home() / "assets"


def must_be_dir(root: Path, what: str) -> None:
    if os.path.lexists(root) and not os.path.isdir(root):
        raise BundleError(f"the {what} {root} is not a directory")


def check_free(root: Path, rel: str, want_dir: bool, what: str, created: dict[str, bool]) -> bool:
    """Whether root/rel exists (of the kind wanted); refused when it lies outside root, when a
    file or link stands on its way, or when it is of the other kind. `created` collects the
    directories to make (rel -> True) and those seen existing (False), in order."""
    inside(root, rel, what)
    parts = rel.split("/")
    for n in range(1, len(parts)):
        d = "/".join(parts[:n])
        if d in created:
            continue
        kind = kind_of(root / d)
        if kind not in (None, "a directory"):
            raise BundleError(f"cannot write {rel!r} into the {what} ({root}): {d!r} there is {kind}")
        created[d] = kind is None
    kind = kind_of(root / rel)
    ok = ("a directory",) if want_dir else ("a file", "a symbolic link")
    if kind is not None and kind not in ok:
        wanted = "a directory" if want_dir else "a file"
        raise BundleError(f"cannot write {rel!r} into the {what} ({root}): {kind} is there, the bundle brings {wanted}")
    return kind is not None


def plan_store(root: Path, units: list[tuple[str, bool]]) -> tuple[list[str], list[Unit]]:
    created: dict[str, bool] = {}
    planned = [Unit(rel, is_dir, check_free(root, rel, is_dir, "store", created)) for rel, is_dir in units]
    return [d for d, new in created.items() if new], planned


def sha256_or_none(path: Path) -> str | None:
    from ..assets.store import sha256_file

    try:
        return sha256_file(path)
    except OSError:
        return None
