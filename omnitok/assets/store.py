"""The asset store: one place that finds tokenizer files and verifies them before use.

Search order for an OpenAI rank file (`<encoding>.tiktoken`):
1. embedded in this package (cl100k_base, o200k_base): works offline with no set-up;
2. omnitok's own asset directory, `$OMNITOK_HOME/assets/tiktoken/` (bundles install there);
3. tiktoken's cache (`TIKTOKEN_CACHE_DIR`, `DATA_GYM_CACHE_DIR`, or `<tmp>/data-gym-cache`),
   where files are named by the sha1 of their URL.
Every candidate is checked against the sha256 tiktoken pins; nothing is downloaded here.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

from ..errors import AssetError

EMBEDDED_DIR = Path(__file__).parent / "data"


def omnitok_home() -> Path:
    """omnitok's data directory: $OMNITOK_HOME, else $XDG_DATA_HOME/omnitok, else ~/.local/share."""
    if env := os.environ.get("OMNITOK_HOME"):
        return Path(env)
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(base) / "omnitok"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_sha256(path: Path, expected: str) -> bool:
    return sha256_file(path) == expected


def _tiktoken_cache_dirs() -> list[Path]:
    dirs = []
    for var in ("TIKTOKEN_CACHE_DIR", "DATA_GYM_CACHE_DIR"):
        if value := os.environ.get(var):
            dirs.append(Path(value))
    if not dirs:
        dirs.append(Path(tempfile.gettempdir()) / "data-gym-cache")
    return dirs


def asset_store() -> Path:
    """$OMNITOK_HOME/assets for reading: settled first, once a process (transactions.settled: what
    an install killed midway left is rolled back, so no reader sees half of a bundle)."""
    from .transactions import settled

    return settled(omnitok_home() / "assets")


def tiktoken_candidates(encoding: str, url: str) -> list[tuple[Path, str]]:
    """(path, where) pairs to try, in search order."""
    name = f"{encoding}.tiktoken"
    out = [
        (EMBEDDED_DIR / "openai" / name, "embedded"),
        (asset_store() / "tiktoken" / name, "omnitok asset store"),
    ]
    cache_key = hashlib.sha1(url.encode()).hexdigest()
    out += [(d / cache_key, f"tiktoken cache {d}") for d in _tiktoken_cache_dirs()]
    return out


def find_tiktoken_file(encoding: str, url: str, sha256: str) -> tuple[Path, str]:
    """Return (path, where) of a verified rank file for `encoding`, or raise AssetError."""
    bad: list[str] = []
    for path, where in tiktoken_candidates(encoding, url):
        if not path.is_file():
            continue
        actual = sha256_file(path)
        if actual == sha256:
            return path, where
        bad.append(f"{path} ({where}) has sha256 {actual}, expected {sha256}")
    if bad:
        raise AssetError(f"no valid {encoding} vocabulary: " + "; ".join(bad))
    looked = ", ".join(str(p) for p, _ in tiktoken_candidates(encoding, url))
    raise AssetError(
        f"the {encoding} vocabulary is not embedded in omnitok and was not found offline (looked in: {looked})",
        hint=f"on a connected machine download {url} and place it at "
        f"{omnitok_home() / 'assets' / 'tiktoken' / (encoding + '.tiktoken')}",
    )
