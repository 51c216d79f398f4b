"""The records of installed bundles (`omnitok bundle list`): each bundle's manifest as installed,
and whether the store still holds its files as it installed them."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from .manifest import inside, parse
from .plan import sha256_or_none, store_dir
from .sources import BundleError

MAX_RECORD_BYTES = 64 << 20


def _read_record(p: Path) -> dict:
    fd = os.open(p, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise BundleError("not a regular file")
        if st.st_size > MAX_RECORD_BYTES:
            raise BundleError(f"{st.st_size} bytes is over the record limit ({MAX_RECORD_BYTES})")
        data = f.read(MAX_RECORD_BYTES + 1)
    if len(data) > MAX_RECORD_BYTES:
        raise BundleError(f"over the record limit ({MAX_RECORD_BYTES} bytes)")
    return parse(data, str(p))


def installed(store: Path | None = None) -> list[dict]:
    """The bundles installed in the store; a malformed record is skipped with a warning."""
    from ..notices import warn_once

    root = Path(store) if store else store_dir()
    folder = root / "bundles"
    try:
        names = sorted(n for n in os.listdir(folder) if n.endswith(".json"))
    except FileNotFoundError:
        return []
    except OSError as e:
        warn_once(f"bundle-records:{folder}", f"cannot list the installed bundles in {folder}: {e.strerror or e}")
        return []
    out = []
    for n in names:
        p = folder / n
        try:
            m = _read_record(p)
        except (BundleError, OSError) as e:
            reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
            warn_once(f"bundle-record:{p}", f"skipping the malformed bundle record {p}: {reason}")
            continue
        replaced = _replaced(root, m)
        row = {
            "name": m["name"],
            "record": str(p),
            "models": sorted(m.get("models", {})),
            "files": len(m["files"]),
            "intact": not replaced,
        }
        if replaced:
            row["replaced"] = replaced
            warn_once(
                f"bundle-replaced:{p}",
                f"bundle {m['name']!r}: {len(replaced)} of its files changed since it was installed "
                f"(replaced by another bundle, edited or removed): {', '.join(replaced[:5])}"
                + (" ..." if len(replaced) > 5 else ""),
            )
        out.append(row)
    return out


def _replaced(root: Path, manifest: dict) -> list[str]:
    """The files of an installed bundle that are no longer in the store as it installed them
    (missing, not a regular file, another size or sha256)."""
    out = []
    for e in manifest["files"]:
        try:
            p = inside(root, e["path"])
            st = os.lstat(p)
        except (BundleError, OSError):
            out.append(e["path"])
            continue
        if not stat.S_ISREG(st.st_mode) or st.st_size != e["size"] or sha256_or_none(p) != e["sha256"]:
            out.append(e["path"])
    return out
