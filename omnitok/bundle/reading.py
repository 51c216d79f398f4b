"""Reading a bundle safely: the manifest goes through the one schema (manifest.py) first. Then every
member is checked before a byte of it is kept: a regular file (no symlink, hard link, device,
directory or FIFO), a relative path with no `..`, listed in the manifest, no larger than the
manifest says nor than the limits (per member, in total, member count: decompression bombs), and
with the sha256 and BLAKE3 the manifest pins (and, for the files omnitok itself pins, tiktoken's
rank files and the Gemma models, with omnitok's sha256: what use would refuse, verify and install
refuse)."""

from __future__ import annotations

import contextlib
import hashlib
import lzma
import posixpath
import struct
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path

from .manifest import MAX_MANIFEST_BYTES, inside, parse, shown
from .sources import BundleError

ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
# A long-name (GNU) or extended (pax) header's data is read whole by tarfile before any member
# limit applies: a 204 KB gzip held a 200 MB name (~0.9-1.3 GB of memory, the name echoed in the
# error). A bundle's names are at most manifest.MAX_PATH characters.
MAX_HEADER_BYTES = 64 << 10
_HEADERS = {
    tarfile.GNUTYPE_LONGNAME: "GNU long name",
    tarfile.GNUTYPE_LONGLINK: "GNU long link",
    tarfile.XHDTYPE: "pax",
    tarfile.XGLTYPE: "pax global",
    tarfile.SOLARIS_XHDTYPE: "Solaris extended",
}


# Extended headers in a row before a member: tarfile takes each by recursion (3,000 chained
# global pax headers in a 3 KB gzip were a RecursionError traceback), and a bundle has none.
MAX_HEADERS_IN_A_ROW = 8


class _BoundedInfo(tarfile.TarInfo):
    """tarfile's member header, refusing a header whose data is over MAX_HEADER_BYTES before it
    is read, and a run of more than MAX_HEADERS_IN_A_ROW extended headers (a
    SubsequentHeaderError: tarfile reports it as a ReadError, a damaged archive)."""

    def _proc_member(self, tarfile_):
        kind = _HEADERS.get(self.type)
        if kind is None:
            tarfile_._omnitok_run = 0
        else:
            run = tarfile_._omnitok_run = getattr(tarfile_, "_omnitok_run", 0) + 1
            if run > MAX_HEADERS_IN_A_ROW:
                raise tarfile.SubsequentHeaderError(f"more than {MAX_HEADERS_IN_A_ROW} extended headers in a row")
            if self.size > MAX_HEADER_BYTES:
                raise tarfile.SubsequentHeaderError(
                    f"a {kind} header of {self.size} bytes (at most {MAX_HEADER_BYTES} are read)"
                )
        return super()._proc_member(tarfile_)


@dataclass(frozen=True)
class Limits:
    max_member_bytes: int = 2 << 30
    max_total_bytes: int = 16 << 30
    max_members: int = 10_000


def stream_errors() -> tuple[type[BaseException], ...]:
    """What reading a damaged archive raises: tarfile's stream mode lets some garbage through as
    TypeError (a truncated gzip header), ValueError or struct.error."""
    errors: tuple[type[BaseException], ...] = (
        tarfile.TarError,
        EOFError,
        OSError,
        zlib.error,
        lzma.LZMAError,
        struct.error,
        TypeError,
        ValueError,
    )
    try:
        import zstandard
    except ImportError:
        return errors
    return (*errors, zstandard.ZstdError)


def open_stream(path: str):
    try:
        f = open(path, "rb")  # noqa: SIM115 - closed with the tar
        head = f.read(4)
        f.seek(0)
    except OSError as e:
        raise BundleError(f"{path}: cannot read the bundle ({e.strerror or e})") from None
    if head == ZSTD_MAGIC:
        try:
            import zstandard
        except ImportError:
            f.close()
            raise BundleError(f"{path}: a zstd bundle needs the zstandard package") from None
        stream, mode = zstandard.ZstdDecompressor().stream_reader(f), "r|"
    else:
        stream, mode = f, "r|*"
    try:
        return f, tarfile.open(fileobj=stream, mode=mode, tarinfo=_BoundedInfo)
    except stream_errors() as e:
        f.close()
        raise BundleError(f"{path}: not a bundle archive ({e})") from None


@contextlib.contextmanager
def _archive(path: str):
    """The bundle's tar stream, read once from the start; what a damaged archive raises while it
    is read becomes one BundleError, and the file is closed however reading ends."""
    f, tar = open_stream(path)
    try:
        yield tar
    except BundleError:
        raise
    except stream_errors() as e:
        raise BundleError(f"{path}: damaged archive ({type(e).__name__}: {e})") from None
    finally:
        tar.close()
        f.close()


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


class Staged:
    """A block writer into `dest` (or nowhere); a failed write (a full disk) is reported as the
    install's failure, not as damage in the archive."""

    def __init__(self, dest: Path | None, path: str):
        self.dest, self.path, self.f = dest, path, None

    def _fail(self, e: OSError):
        raise BundleError(f"{self.path}: cannot stage {str(self.dest)!r} ({e.strerror or e})") from None

    def __enter__(self):
        if self.dest is not None:
            try:
                self.dest.parent.mkdir(parents=True, exist_ok=True)
                self.f = open(self.dest, "xb")  # noqa: SIM115 - closed in __exit__
            except OSError as e:
                self._fail(e)
        return self.write

    def write(self, block: bytes) -> None:
        if self.f is not None:
            try:
                self.f.write(block)
            except OSError as e:
                self._fail(e)

    def __exit__(self, *exc):
        if self.f is not None:
            try:
                self.f.close()
            except OSError as e:
                if exc[0] is None:
                    self._fail(e)
        return False


def pinned_sha256() -> dict[str, tuple[str, str]]:
    """Bundle paths omnitok checks against a sha256 of its own before use (tiktoken's pinned rank
    files, the Gemma SentencePiece models): path -> (what, sha256). A bundle whose manifest agrees
    with a changed file is refused here, not at first use."""
    from ..families.gemini import SENTENCEPIECE
    from ..tokenizers.openai_encodings import ENCODINGS

    out = {f"tiktoken/{s.file}.tiktoken": (f"{s.file}.tiktoken", s.sha256) for s in ENCODINGS.values()}
    out.update({f"gemini/{v.filename}": (v.filename, v.sha256) for v in SENTENCEPIECE.values()})
    return out


CALIBRATIONS = "calibrations/"  # omnitok calibrate's files (omnitok.calibration), checked like the store reads them
MAX_CALIBRATION = 1 << 20


def _calibration_problem(rel: str, data: bytes) -> str | None:
    """Why a calibrations/ member is not a calibration that offline counting would read, or None."""
    from ..calibration import MAX_FILE, parse
    from ..errors import AssetError

    name = rel[len(CALIBRATIONS) :]
    if "/" in name or not name.endswith(".json"):
        return "a calibration is calibrations/<id>.json"
    if len(data) > MAX_FILE:
        return f"a calibration is at most {MAX_FILE} bytes"
    try:
        cal = parse(data, rel)
    except AssetError as e:
        return e.message
    if cal.id != name[: -len(".json")]:
        return f"its id {cal.id!r} is not its file name's"
    return None


def check_members(path: str, limits: Limits, staging: Path | None, problems: list[str] | None = None) -> dict:
    """Read the whole bundle, checking every member; write accepted files under `staging` when
    given. With `problems`, hash mismatches are collected instead of raised (bundle verify)."""
    manifest = None
    expected: dict[str, dict] = {}
    pins = pinned_sha256()
    seen: set[str] = set()
    tally = _Tally()
    with _archive(path) as tar:
        for m in tar:
            name = _admitted(path, m, limits, tally)
            if manifest is None:
                manifest = _first_manifest(path, tar, m, name)
                expected = {e["path"]: e for e in manifest["files"]}
                continue
            rel, entry = _listed(path, m, name, expected, seen)
            sha, b3, content = _stage(path, tar, m, rel, staging)
            if message := _content_problem(path, m, rel, entry, sha, b3, content, pins):
                _refuse(message, problems)
    if manifest is None:
        raise BundleError(f"{path}: no manifest.json")
    missing = sorted(set(expected) - seen)
    if missing:
        _refuse(f"{path}: files listed in the manifest are missing: {', '.join(missing)}", problems)
    return manifest


def _refuse(message: str, problems: list[str] | None) -> None:
    """A problem raised (install), or collected (verify: `problems`)."""
    if problems is None:
        raise BundleError(message)
    problems.append(message)


@dataclass
class _Tally:
    """The members and unpacked bytes read so far, against the limits."""

    members: int = 0
    bytes: int = 0


def _admitted(path: str, m: tarfile.TarInfo, limits: Limits, tally: _Tally) -> str:
    """The member's name, if it may be in a bundle at all: within the member count, a plain
    relative path, a regular file, under the member and total size limits."""
    tally.members += 1
    if tally.members > limits.max_members:
        raise BundleError(f"{path}: more than {limits.max_members} members (limit)")
    name = _safe_name(m.name)
    if name is None:
        raise BundleError(f"{path}: entry {shown(m.name)} refused: absolute path or '..'")
    if not m.isreg():
        raise BundleError(f"{path}: entry {shown(m.name)} refused: {_kind(m)}")
    if m.size > limits.max_member_bytes:
        raise BundleError(
            f"{path}: entry {shown(m.name)} refused: {m.size} bytes is over the member limit ({limits.max_member_bytes})"
        )
    tally.bytes += m.size
    if tally.bytes > limits.max_total_bytes:
        raise BundleError(
            f"{path}: entry {shown(m.name)} refused: the archive unpacks past the total limit "
            f"({limits.max_total_bytes} bytes)"
        )
    return name


def _first_manifest(path: str, tar: tarfile.TarFile, m: tarfile.TarInfo, name: str) -> dict:
    """The first member: manifest.json, of a plausible size, through the one schema."""
    if name != "manifest.json":
        raise BundleError(f"{path}: entry {shown(m.name)} refused: manifest.json must come first")
    if m.size > MAX_MANIFEST_BYTES:
        raise BundleError(f"{path}: manifest.json is implausibly large")
    return parse(tar.extractfile(m).read(), path)


def _listed(path: str, m: tarfile.TarInfo, name: str, expected: dict[str, dict], seen: set[str]) -> tuple[str, dict]:
    """(path in the manifest, its entry) of a file member: under files/, listed, once, of the
    size the manifest says."""
    rel = name.removeprefix("files/")
    if not name.startswith("files/") or rel not in expected:
        raise BundleError(f"{path}: entry {shown(m.name)} refused: not listed in the manifest")
    if rel in seen:
        raise BundleError(f"{path}: entry {shown(m.name)} refused: it appears twice")
    seen.add(rel)
    entry = expected[rel]
    if m.size != entry["size"]:
        raise BundleError(f"{path}: entry {shown(m.name)} refused: {m.size} bytes, the manifest says {entry['size']}")
    return rel, entry


def _stage(
    path: str, tar: tarfile.TarFile, m: tarfile.TarInfo, rel: str, staging: Path | None
) -> tuple[str, str, bytes | None]:
    """(sha256, BLAKE3, content) of a member, read once and written under `staging` when given;
    the content is kept only for a calibration (a few KB, read again by its check)."""
    from blake3 import blake3

    sha, b3 = hashlib.sha256(), blake3()
    src = tar.extractfile(m)
    dest = inside(staging, rel, "staging directory") if staging is not None else None
    content: list[bytes] | None = [] if rel.startswith(CALIBRATIONS) else None
    with Staged(dest, path) as out:
        while block := src.read(1 << 20):
            sha.update(block)
            b3.update(block)
            out(block)
            if content is not None and sum(map(len, content)) <= MAX_CALIBRATION:
                content.append(block)
    return sha.hexdigest(), b3.hexdigest(), b"".join(content) if content is not None else None


def _content_problem(
    path: str,
    m: tarfile.TarInfo,
    rel: str,
    entry: dict,
    sha: str,
    b3: str,
    content: bytes | None,
    pins: dict[str, tuple[str, str]],
) -> str | None:
    """Why a member's bytes are refused: hashes other than the manifest's, a pinned file other
    than omnitok's, a calibration offline counting would not read; else None."""
    bad = []
    if sha != entry["sha256"]:
        bad.append(f"sha256 {sha} != {entry['sha256']}")
    if "blake3" in entry and b3 != entry["blake3"]:
        bad.append(f"blake3 {b3} != {entry['blake3']}")
    if bad:
        return f"{path}: entry {shown(m.name)} refused: hash mismatch ({'; '.join(bad)})"
    if (pin := pins.get(rel)) and sha != pin[1]:
        return (
            f"{path}: entry {shown(m.name)} refused: sha256 {sha} is not the pinned sha256 of "
            f"{pin[0]} ({pin[1]}), which omnitok checks before using it"
        )
    if content is not None and (problem := _calibration_problem(rel, content)):
        return f"{path}: entry {shown(m.name)} refused: {problem}"
    return None


def read_manifest(path: str, limits: Limits) -> dict:
    """The checked manifest: the first member only, so a refused one costs no unpacking."""
    with _archive(path) as tar:
        for m in tar:
            if m.name != "manifest.json" or not m.isreg() or m.size > MAX_MANIFEST_BYTES:
                raise BundleError(f"{path}: the first entry is {shown(m.name)}, not manifest.json")
            return parse(tar.extractfile(m).read(), path)
    raise BundleError(f"{path}: empty archive")
