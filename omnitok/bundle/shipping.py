"""Tokenizer bundles shipped to workers on other hosts (Ray's, today): the driver reads and checks
each archive once (`load_bundle`) and hands its bytes to the workers with its sha256
(`BundleAsset`); each host installs it once into its own asset store ($OMNITOK_HOME), verified,
under a file lock shared by the host's workers (`install_bundles`), so that an air-gapped worker
counts exactly with files it never downloaded.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass

from ..errors import AssetError


@dataclass(frozen=True)
class BundleAsset:
    """A tokenizer bundle archive, by where it is and the sha256 of the archive file."""

    path: str
    sha256: str


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_uri(path: str, fs=None) -> bytes:
    """A whole file from a local path or any URI a pyarrow filesystem reads (s3://, gs://, ...),
    or a path in the filesystem `fs`."""
    from ..io.shards import filesystem

    pfs, where = filesystem(path, fs)
    with pfs.open_input_stream(where) as f:
        return f.read()


def load_bundle(bundle: str | BundleAsset) -> tuple[BundleAsset, bytes]:
    """A bundle archive's bytes, read from a path or URI and checked: a bundle (its manifest reads)
    with the sha256 a BundleAsset pins. Raises AssetError."""
    import tempfile

    from .reading import Limits, read_manifest
    from .sources import BundleError

    path, pinned = (bundle.path, bundle.sha256) if isinstance(bundle, BundleAsset) else (str(bundle), None)
    try:
        data = read_uri(path)
    except (OSError, ValueError) as e:
        raise AssetError(f"{path}: cannot read the bundle ({e})", hint="`omnitok bundle create` makes one") from None
    digest = sha256_bytes(data)
    if pinned and pinned != digest:
        raise AssetError(f"{path}: sha256 {digest}, expected {pinned}")
    with tempfile.NamedTemporaryFile(suffix=".bundle") as tmp:
        tmp.write(data)
        tmp.flush()
        try:
            read_manifest(tmp.name, Limits())
        except BundleError as e:
            raise AssetError(str(e).replace(tmp.name, path)) from None
    return BundleAsset(path, digest), data


@contextlib.contextmanager
def _locked(path):
    import fcntl

    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def install_bundles(bundles: Sequence[BundleAsset], payloads: Sequence[bytes | None] | None = None) -> list[str]:
    """Install each bundle into this host's asset store once (a marker per sha256 under
    $OMNITOK_HOME/installed-bundles, taken under a file lock, so the workers of one host install it
    once between them). The archive comes from `payloads` (its bytes, shipped by the driver) or
    else is read from its path; either way it must have the sha256 the spec pins, and it is then
    installed by `omnitok.bundle.install`, which checks every file against the manifest. Returns
    the sha256 of the bundles installed by this call."""
    if not bundles:
        return []
    from ..assets.store import omnitok_home
    from .install import install
    from .sources import BundleError

    marks = omnitok_home() / "installed-bundles"
    marks.mkdir(parents=True, exist_ok=True)
    done = []
    for i, asset in enumerate(bundles):
        marker = marks / f"{asset.sha256}.json"
        if marker.is_file():
            continue
        with _locked(marks / ".lock"):
            if marker.is_file():
                continue
            data = payloads[i] if payloads is not None and i < len(payloads) else None
            if data is None:
                try:
                    data = read_uri(asset.path)
                except OSError as e:
                    raise BundleError(f"{asset.path}: the bundle cannot be read on this worker ({e})") from None
            actual = sha256_bytes(data)
            if actual != asset.sha256:
                raise BundleError(f"{asset.path}: sha256 {actual} on this worker, the spec pins {asset.sha256}")
            tmp = marks / f".{asset.sha256}.{os.getpid()}.bundle"
            try:
                tmp.write_bytes(data)
                result = install(str(tmp))
            finally:
                with contextlib.suppress(FileNotFoundError):
                    tmp.unlink()
            marker.write_text(json.dumps({"path": asset.path, "sha256": asset.sha256, "installed": result}))
            done.append(asset.sha256)
    return done
