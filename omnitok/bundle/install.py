"""Reading and installing bundles safely.

Every member is checked before a byte of it is kept: a regular file (no symlink, hard link,
device, directory or FIFO), a relative path with no `..`, listed in the manifest, no larger than
the manifest says nor than the limits (per member, in total, member count: decompression bombs),
and with the sha256 and BLAKE3 the manifest pins. A manifest of an unknown format version is
refused. Files are extracted into a staging directory inside the store and moved into place
only when every check has passed, under a lock, each asset replaced with an atomic rename: a
failed or interrupted install leaves the store as it was, and two installs do not interleave.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import posixpath
import shutil
import tarfile
import uuid
from dataclasses import dataclass
from pathlib import Path

from .sources import BundleError

ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


@dataclass(frozen=True)
class Limits:
    max_member_bytes: int = 2 << 30
    max_total_bytes: int = 16 << 30
    max_members: int = 10_000


def _open_stream(path: str):
    f = open(path, "rb")  # noqa: SIM115 - closed with the tar
    head = f.read(4)
    f.seek(0)
    if head == ZSTD_MAGIC:
        try:
            import zstandard
        except ImportError:
            f.close()
            raise BundleError(f"{path}: a zstd bundle needs the zstandard package") from None
        return f, tarfile.open(fileobj=zstandard.ZstdDecompressor().stream_reader(f), mode="r|")
    try:
        return f, tarfile.open(fileobj=f, mode="r|*")
    except tarfile.TarError as e:
        f.close()
        raise BundleError(f"{path}: not a bundle archive ({e})") from None


def _safe_name(name: str) -> str | None:
    """The member name if it is a plain relative path, else None."""
    if not name or name.startswith(("/", "\\")) or "\\" in name or "\x00" in name:
        return None
    norm = posixpath.normpath(name)
    if norm != name or norm.startswith("../") or norm == ".." or "/../" in norm or norm.startswith("./"):
        return None
    return norm


def _kind(m: tarfile.TarInfo) -> str:
    if m.issym():
        return "a symbolic link"
    if m.islnk():
        return "a hard link"
    if m.ischr() or m.isblk():
        return "a device file"
    if m.isfifo():
        return "a FIFO"
    if m.isdir():
        return "a directory entry"
    return "not a regular file"


def _check_manifest(data: bytes, source: str) -> dict:
    from .archive import FORMAT, FORMAT_VERSION

    try:
        manifest = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise BundleError(f"{source}: manifest.json is not valid JSON ({e})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BundleError(f"{source}: manifest.json is not an omnitok bundle manifest")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise BundleError(
            f"{source}: manifest format version {manifest.get('format_version')!r} is not one this omnitok "
            f"reads ({FORMAT_VERSION}); use a matching omnitok version"
        )
    files = manifest.get("files")
    if not isinstance(files, list):
        raise BundleError(f"{source}: manifest.json has no file list")
    for entry in files:
        if not isinstance(entry, dict) or _safe_name(str(entry.get("path", ""))) is None:
            raise BundleError(f"{source}: manifest entry {entry!r} has an unsafe path")
        if not isinstance(entry.get("size"), int) or not isinstance(entry.get("sha256"), str):
            raise BundleError(f"{source}: manifest entry {entry.get('path')!r} lacks size or sha256")
    return manifest


def check_members(path: str, limits: Limits, staging: Path | None, problems: list[str] | None = None) -> dict:
    """Read the whole bundle, checking every member; write accepted files under `staging` when
    given. With `problems`, hash mismatches are collected instead of raised (bundle verify)."""
    from blake3 import blake3

    f, tar = _open_stream(path)
    manifest = None
    expected: dict[str, dict] = {}
    seen: set[str] = set()
    total = count = 0
    try:
        for m in tar:
            count += 1
            if count > limits.max_members:
                raise BundleError(f"{path}: more than {limits.max_members} members (limit)")
            name = _safe_name(m.name)
            if name is None:
                raise BundleError(f"{path}: entry {m.name!r} refused: absolute path or '..'")
            if not m.isreg():
                raise BundleError(f"{path}: entry {m.name!r} refused: {_kind(m)}")
            if m.size > limits.max_member_bytes:
                raise BundleError(
                    f"{path}: entry {m.name!r} refused: {m.size} bytes is over the member limit "
                    f"({limits.max_member_bytes})"
                )
            total += m.size
            if total > limits.max_total_bytes:
                raise BundleError(
                    f"{path}: entry {m.name!r} refused: the archive unpacks past the total limit "
                    f"({limits.max_total_bytes} bytes)"
                )
            if manifest is None:
                if name != "manifest.json":
                    raise BundleError(f"{path}: entry {m.name!r} refused: manifest.json must come first")
                if m.size > 64 << 20:
                    raise BundleError(f"{path}: manifest.json is implausibly large")
                manifest = _check_manifest(tar.extractfile(m).read(), path)
                expected = {e["path"]: e for e in manifest["files"]}
                continue
            rel = name.removeprefix("files/")
            if not name.startswith("files/") or rel not in expected:
                raise BundleError(f"{path}: entry {m.name!r} refused: not listed in the manifest")
            if rel in seen:
                raise BundleError(f"{path}: entry {m.name!r} refused: it appears twice")
            seen.add(rel)
            entry = expected[rel]
            if m.size != entry["size"]:
                raise BundleError(
                    f"{path}: entry {m.name!r} refused: {m.size} bytes, the manifest says {entry['size']}"
                )
            sha, b3 = hashlib.sha256(), blake3()
            src = tar.extractfile(m)
            dest = None
            if staging is not None:
                dest = staging / rel
                dest.parent.mkdir(parents=True, exist_ok=True)
            with open(dest, "wb") if dest is not None else contextlib.nullcontext() as out:
                while block := src.read(1 << 20):
                    sha.update(block)
                    b3.update(block)
                    if out is not None:
                        out.write(block)
            bad = []
            if sha.hexdigest() != entry["sha256"]:
                bad.append(f"sha256 {sha.hexdigest()} != {entry['sha256']}")
            if entry.get("blake3") and b3.hexdigest() != entry["blake3"]:
                bad.append(f"blake3 {b3.hexdigest()} != {entry['blake3']}")
            if bad:
                message = f"{path}: entry {m.name!r} refused: hash mismatch ({'; '.join(bad)})"
                if problems is None:
                    raise BundleError(message)
                problems.append(message)
    except (tarfile.TarError, EOFError, OSError) as e:
        raise BundleError(f"{path}: damaged archive ({type(e).__name__}: {e})") from None
    finally:
        tar.close()
        f.close()
    if manifest is None:
        raise BundleError(f"{path}: no manifest.json")
    missing = sorted(set(expected) - seen)
    if missing:
        message = f"{path}: files listed in the manifest are missing: {', '.join(missing)}"
        if problems is None:
            raise BundleError(message)
        problems.append(message)
    return manifest


def read_manifest(path: str, limits: Limits) -> dict:
    f, tar = _open_stream(path)
    try:
        for m in tar:
            if m.name != "manifest.json" or not m.isreg() or m.size > 64 << 20:
                raise BundleError(f"{path}: the first entry is {m.name!r}, not manifest.json")
            return _check_manifest(tar.extractfile(m).read(), path)
    except (tarfile.TarError, EOFError, OSError) as e:
        raise BundleError(f"{path}: damaged archive ({e})") from None
    finally:
        tar.close()
        f.close()
    raise BundleError(f"{path}: empty archive")


def store_dir() -> Path:
    from ..assets.store import omnitok_home

    return omnitok_home() / "assets"


@contextlib.contextmanager
def _store_lock(root: Path):
    import fcntl

    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".lock", "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _units(paths: list[str]) -> list[str]:
    """What is replaced as a whole: a Hugging Face model's directory, or a single file."""
    units = set()
    for p in paths:
        parts = p.split("/")
        units.add("/".join(parts[:2]) if parts[0] == "hf" else p)
    return sorted(units)


def install(
    path: str,
    limits: Limits = Limits(),
    hf_cache: bool = False,
    tiktoken_cache: bool = False,
    store: Path | None = None,
) -> dict:
    """Verify and install a bundle into omnitok's asset store (and the standard caches)."""
    root = Path(store) if store else store_dir()
    root.mkdir(parents=True, exist_ok=True)
    staging = root / f".staging-{uuid.uuid4().hex}"
    staging.mkdir()
    try:
        manifest = check_members(path, limits, staging)
        paths = [e["path"] for e in manifest["files"]]
        with _store_lock(root):
            for unit in _units(paths):
                src, dest = staging / unit, root / unit
                dest.parent.mkdir(parents=True, exist_ok=True)
                if src.is_dir() and dest.exists():
                    trash = root / f".old-{uuid.uuid4().hex}"
                    os.rename(dest, trash)
                    os.rename(src, dest)
                    shutil.rmtree(trash, ignore_errors=True)
                else:
                    os.replace(src, dest)
            record = root / "bundles" / f"{manifest['name']}-{_digest(manifest)}.json"
            record.parent.mkdir(exist_ok=True)
            tmp = record.with_suffix(".tmp")
            tmp.write_text(json.dumps(manifest, indent=1, sort_keys=True))
            os.replace(tmp, record)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    done = {"bundle": path, "name": manifest["name"], "files": len(paths), "store": str(root)}
    if hf_cache:
        done["hf_cache"] = _into_hf_cache(root, manifest)
    if tiktoken_cache:
        done["tiktoken_cache"] = _into_tiktoken_cache(root, manifest)
    return done


def _digest(manifest: dict) -> str:
    return hashlib.sha256(json.dumps(manifest["files"], sort_keys=True).encode()).hexdigest()[:12]


def _into_hf_cache(root: Path, manifest: dict) -> str:
    """The Hugging Face cache layout (blobs + snapshots/<rev> + refs/main), so that transformers
    with HF_HUB_OFFLINE=1 finds the files unchanged."""
    from ..assets.hf import hf_cache_dir

    cache = hf_cache_dir()
    by_repo: dict[str, list[dict]] = {}
    for e in manifest["files"]:
        if e["path"].startswith("hf/"):
            by_repo.setdefault(e["path"].split("/")[1].replace("--", "/", 1), []).append(e)
    for repo, entries in by_repo.items():
        rev = manifest.get("hf_revisions", {}).get(repo) or "0" * 40
        base = cache / ("models--" + repo.replace("/", "--"))
        (base / "blobs").mkdir(parents=True, exist_ok=True)
        snap = base / "snapshots" / rev
        snap.mkdir(parents=True, exist_ok=True)
        for e in entries:
            blob = base / "blobs" / e["sha256"]
            if not blob.exists():
                tmp = blob.with_suffix(f".tmp{os.getpid()}")
                shutil.copyfile(root / e["path"], tmp)
                os.replace(tmp, blob)
            link = snap / e["path"].split("/", 2)[2]
            with contextlib.suppress(FileNotFoundError):
                link.unlink()
            os.symlink(os.path.relpath(blob, link.parent), link)
        # As huggingface_hub records a 404: these files do not exist, so offline lookups stop here.
        from .sources import HF_FILES

        present = {e["path"].split("/", 2)[2] for e in entries}
        no_exist = base / ".no_exist" / rev
        no_exist.mkdir(parents=True, exist_ok=True)
        for name in HF_FILES:
            if name not in present:
                (no_exist / name).touch()
        (base / "refs").mkdir(exist_ok=True)
        (base / "refs" / "main").write_text(rev)
    return str(cache)


def _into_tiktoken_cache(root: Path, manifest: dict) -> str:
    """tiktoken's cache layout (files named by the sha1 of their URL) for TIKTOKEN_CACHE_DIR."""
    from ..assets.store import _tiktoken_cache_dirs
    from ..tokenizers.openai_encodings import ENCODINGS

    target = _tiktoken_cache_dirs()[0]
    target.mkdir(parents=True, exist_ok=True)
    by_file = {f"tiktoken/{s.file}.tiktoken": s.url for s in ENCODINGS.values()}
    for e in manifest["files"]:
        url = by_file.get(e["path"])
        if url:
            dest = target / hashlib.sha1(url.encode()).hexdigest()
            tmp = dest.with_suffix(".tmp")
            shutil.copyfile(root / e["path"], tmp)
            os.replace(tmp, dest)
    return str(target)


def installed(store: Path | None = None) -> list[dict]:
    root = Path(store) if store else store_dir()
    out = []
    for p in sorted((root / "bundles").glob("*.json")):
        with contextlib.suppress(json.JSONDecodeError, OSError):
            m = json.loads(p.read_text())
            out.append(
                {
                    "name": m.get("name"),
                    "record": str(p),
                    "models": sorted(m.get("models", {})),
                    "files": len(m.get("files", [])),
                }
            )
    return out
