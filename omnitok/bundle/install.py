"""Reading and installing bundles safely.

Reading: the manifest goes through the one schema (manifest.py) first. Then every member is
checked before a byte of it is kept: a regular file (no symlink, hard link, device, directory
or FIFO), a relative path with no `..`, listed in the manifest, no larger than the manifest says
nor than the limits (per member, in total, member count: decompression bombs), and with the
sha256 and BLAKE3 the manifest pins (and, for the files omnitok itself pins, tiktoken's rank
files and the Gemma models, with omnitok's sha256: what use would refuse, verify and install refuse).

Installing is one transaction under the store's lock:

1. what a killed install left (`.staging-*`; `.old-*` from older versions) is rolled back and
   removed: while we hold the exclusive lock, no staging directory but ours is alive;
2. every file is staged in `.staging-<id>/new/` (inside the store, so moves are renames);
3. the plan is checked before anything moves: each unit's destination (a file, or a Hugging Face
   model's directory, replaced as a whole; and the bundle's record) stays inside the store, has
   no symbolic link or file on its way, and is free or of the same kind (a file never replaces a
   directory, nor the reverse); the same for the Hugging Face and tiktoken caches when asked;
4. a journal is written, then each unit is moved into place, what it replaces kept aside in
   `.staging-<id>/old/`; then the transaction is marked committed.

A failure while moving (an exception, Ctrl-C, a full disk) rolls back from the journal at once;
a kill leaves the journal, and the next install rolls back before it starts. Either way the store
ends byte-for-byte as it was, or with the whole bundle in place. The caches are filled after the
commit, each file written under a temporary name and renamed.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import lzma
import os
import posixpath
import shutil
import stat
import struct
import tarfile
import uuid
import zlib
from dataclasses import dataclass
from pathlib import Path

from .manifest import MAX_MANIFEST_BYTES, hf_repo, inside, parse, unit
from .sources import BundleError

ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
STAGING = ".staging-"
LEGACY_TRASH = ".old-"
JOURNAL = "journal.json"
COMMITTED = "committed"
MAX_RECORD_BYTES = 64 << 20


@dataclass(frozen=True)
class Limits:
    max_member_bytes: int = 2 << 30
    max_total_bytes: int = 16 << 30
    max_members: int = 10_000


def _stream_errors() -> tuple[type[BaseException], ...]:
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


def _open_stream(path: str):
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
        return f, tarfile.open(fileobj=stream, mode=mode)
    except _stream_errors() as e:
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


class _Staged:
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
    from blake3 import blake3

    f, tar = _open_stream(path)
    manifest = None
    expected: dict[str, dict] = {}
    pins = pinned_sha256()
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
                if m.size > MAX_MANIFEST_BYTES:
                    raise BundleError(f"{path}: manifest.json is implausibly large")
                manifest = parse(tar.extractfile(m).read(), path)
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
            dest = inside(staging, rel, "staging directory") if staging is not None else None
            content = [] if rel.startswith(CALIBRATIONS) else None  # read again below: a few KB
            with _Staged(dest, path) as out:
                while block := src.read(1 << 20):
                    sha.update(block)
                    b3.update(block)
                    out(block)
                    if content is not None and sum(map(len, content)) <= MAX_CALIBRATION:
                        content.append(block)
            bad, message = [], ""
            if sha.hexdigest() != entry["sha256"]:
                bad.append(f"sha256 {sha.hexdigest()} != {entry['sha256']}")
            if "blake3" in entry and b3.hexdigest() != entry["blake3"]:
                bad.append(f"blake3 {b3.hexdigest()} != {entry['blake3']}")
            if bad:
                message = f"{path}: entry {m.name!r} refused: hash mismatch ({'; '.join(bad)})"
            elif (pin := pins.get(rel)) and sha.hexdigest() != pin[1]:
                message = (
                    f"{path}: entry {m.name!r} refused: sha256 {sha.hexdigest()} is not the pinned sha256 of "
                    f"{pin[0]} ({pin[1]}), which omnitok checks before using it"
                )
            elif content is not None and (problem := _calibration_problem(rel, b"".join(content))):
                message = f"{path}: entry {m.name!r} refused: {problem}"
            if message:
                if problems is None:
                    raise BundleError(message)
                problems.append(message)
    except BundleError:
        raise
    except _stream_errors() as e:
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
    """The checked manifest: the first member only, so a refused one costs no unpacking."""
    f, tar = _open_stream(path)
    try:
        for m in tar:
            if m.name != "manifest.json" or not m.isreg() or m.size > MAX_MANIFEST_BYTES:
                raise BundleError(f"{path}: the first entry is {m.name!r}, not manifest.json")
            return parse(tar.extractfile(m).read(), path)
    except BundleError:
        raise
    except _stream_errors() as e:
        raise BundleError(f"{path}: damaged archive ({type(e).__name__}: {e})") from None
    finally:
        tar.close()
        f.close()
    raise BundleError(f"{path}: empty archive")


def store_dir() -> Path:
    from ..assets.store import omnitok_home

    return omnitok_home() / "assets"


@contextlib.contextmanager
def _store_lock(root: Path):
    """The store's directory itself is the lock (flock on its descriptor): no lock file, so a
    refused install leaves the store exactly as it was."""
    import fcntl

    fd = os.open(root, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


# --- planning: every destination proven inside its root and free before anything moves ------


def _lkind(p: Path) -> str | None:
    try:
        mode = os.lstat(p).st_mode
    except FileNotFoundError:
        return None
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISREG(mode):
        return "a file"
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    return "a special file"


def _a_dir(root: Path, what: str) -> None:
    if os.path.lexists(root) and not os.path.isdir(root):
        raise BundleError(f"the {what} {root} is not a directory")


def _free(root: Path, rel: str, want_dir: bool, what: str, created: dict[str, bool]) -> bool:
    """Whether root/rel exists (of the kind wanted); refused when it lies outside root, when a
    file or link stands on its way, or when it is of the other kind. `created` collects the
    directories to make (rel -> True) and those seen existing (False), in order."""
    inside(root, rel, what)
    parts = rel.split("/")
    for n in range(1, len(parts)):
        d = "/".join(parts[:n])
        if d in created:
            continue
        kind = _lkind(root / d)
        if kind not in (None, "a directory"):
            raise BundleError(f"cannot write {rel!r} into the {what} ({root}): {d!r} there is {kind}")
        created[d] = kind is None
    kind = _lkind(root / rel)
    ok = ("a directory",) if want_dir else ("a file", "a symbolic link")
    if kind is not None and kind not in ok:
        wanted = "a directory" if want_dir else "a file"
        raise BundleError(f"cannot write {rel!r} into the {what} ({root}): {kind} is there, the bundle brings {wanted}")
    return kind is not None


@dataclass(frozen=True)
class _Unit:
    rel: str
    is_dir: bool
    had_old: bool


def _plan_store(root: Path, units: list[tuple[str, bool]]) -> tuple[list[str], list[_Unit]]:
    created: dict[str, bool] = {}
    planned = [_Unit(rel, is_dir, _free(root, rel, is_dir, "store", created)) for rel, is_dir in units]
    return [d for d, new in created.items() if new], planned


def _plan_hf(manifest: dict, root: Path) -> tuple[Path, list[tuple]]:
    """The Hugging Face cache layout (blobs + snapshots/<rev> + refs/main), so that transformers
    with HF_HUB_OFFLINE=1 finds the files unchanged; as actions on checked paths."""
    from ..assets.hf import hf_cache_dir
    from .sources import HF_FILES

    cache = hf_cache_dir()
    what = "Hugging Face cache"
    _a_dir(cache, what)
    by_repo: dict[str, list[dict]] = {}
    for e in manifest["files"]:
        if (repo := hf_repo(e["path"])) is not None:
            by_repo.setdefault(repo, []).append(e)
    actions: list[tuple] = []
    created: dict[str, bool] = {}

    def dest(rel: str) -> Path:
        _free(cache, rel, False, what, created)
        return cache / rel

    for repo, entries in sorted(by_repo.items()):
        rev = manifest.get("hf_revisions", {}).get(repo) or "0" * 40
        base = "models--" + repo.replace("/", "--")
        present = set()
        for e in entries:
            rest = e["path"].split("/", 2)[2]
            present.add(rest)
            blob = dest(f"{base}/blobs/{e['sha256']}")
            link = dest(f"{base}/snapshots/{rev}/{rest}")
            actions.append(("copy", blob, root / e["path"], e["sha256"]))
            actions.append(("link", link, os.path.relpath(blob, link.parent), None))
        # As huggingface_hub records a 404: these files do not exist, so offline lookups stop here.
        for name in HF_FILES:
            marker = dest(f"{base}/.no_exist/{rev}/{name}")
            actions.append(("unlink" if name in present else "touch", marker, "", None))
        actions.append(("write", dest(f"{base}/refs/main"), rev, None))
    return cache, actions


def _plan_tiktoken(manifest: dict, root: Path) -> tuple[Path, list[tuple]]:
    """tiktoken's cache layout (files named by the sha1 of their URL) for TIKTOKEN_CACHE_DIR."""
    from ..assets.store import _tiktoken_cache_dirs
    from ..tokenizers.openai_encodings import ENCODINGS

    target = _tiktoken_cache_dirs()[0]
    _a_dir(target, "tiktoken cache")
    by_file = {f"tiktoken/{s.file}.tiktoken": s.url for s in ENCODINGS.values()}
    actions: list[tuple] = []
    created: dict[str, bool] = {}
    for e in manifest["files"]:
        if url := by_file.get(e["path"]):
            name = hashlib.sha1(url.encode()).hexdigest()
            _free(target, name, False, "tiktoken cache", created)
            actions.append(("copy", target / name, root / e["path"], None))
    return target, actions


def _sha256(path: Path) -> str | None:
    from ..assets.store import sha256_file

    try:
        return sha256_file(path)
    except OSError:
        return None


def _apply_cache(actions: list[tuple]) -> None:
    """Each file written under a temporary name and renamed into place."""
    for kind, dest, arg, sha in actions:
        if kind == "unlink":
            with contextlib.suppress(FileNotFoundError):
                os.unlink(dest)
            continue
        if kind == "touch" and os.path.lexists(dest):
            continue
        if kind == "copy" and sha is not None and os.path.isfile(dest) and _sha256(dest) == sha:
            continue
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.tmp-{uuid.uuid4().hex[:12]}")
        try:
            if kind == "copy":
                shutil.copyfile(arg, tmp)
            elif kind == "link":
                os.symlink(arg, tmp)
            else:  # write, touch
                tmp.write_text(arg)
            os.replace(tmp, dest)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)


# --- the transaction --------------------------------------------------------------------------


def _discard(path: Path, trash: Path) -> None:
    trash.mkdir(exist_ok=True)
    os.rename(path, trash / uuid.uuid4().hex)


def _apply(root: Path, txn: Path, dirs: list[str], units: list[_Unit]) -> None:
    for d in dirs:
        os.mkdir(root / d)
    for u in units:
        dest, new, aside = root / u.rel, txn / "new" / u.rel, txn / "old" / u.rel
        if u.had_old:
            aside.parent.mkdir(parents=True, exist_ok=True)
            if u.is_dir:
                os.rename(dest, aside)
            else:
                try:  # keep the old bytes while the new file replaces it atomically
                    os.link(dest, aside, follow_symlinks=False)
                except OSError:
                    os.rename(dest, aside)
        if u.is_dir:
            os.rename(new, dest)
        else:
            os.replace(new, dest)


def _rollback(root: Path, txn: Path) -> None:
    """Undo a transaction that did not commit, from its journal (idempotent: a rollback that was
    itself interrupted is finished by the next one)."""
    try:
        journal = json.loads((txn / JOURNAL).read_text())
        dirs, units = journal["dirs"], [_Unit(*u) for u in journal["units"]]
    except (OSError, ValueError, KeyError, TypeError):
        return  # no complete journal: nothing was moved
    trash = txn / "trash"
    for u in reversed(units):
        dest = inside(root, u.rel)
        new, aside = txn / "new" / u.rel, txn / "old" / u.rel
        if u.had_old:
            if not os.path.lexists(aside):
                continue  # never moved aside: dest is the original
            if u.is_dir:
                if os.path.lexists(dest):
                    _discard(dest, trash)
                os.rename(aside, dest)
            else:
                os.replace(aside, dest)
        elif not os.path.lexists(new) and os.path.lexists(dest):
            _discard(dest, trash)
    for d in reversed(dirs):
        with contextlib.suppress(OSError):
            os.rmdir(inside(root, d))


def recover(root: Path) -> None:
    """Roll back and remove what killed installs left; call with the store's lock held."""
    for name in sorted(os.listdir(root)):
        p = root / name
        if name.startswith(STAGING):
            if _lkind(p) != "a directory":
                os.unlink(p)
                continue
            if not (p / COMMITTED).exists():
                try:
                    _rollback(root, p)
                except OSError as e:
                    raise BundleError(f"{root}: cannot roll back the interrupted install in {name} ({e})") from None
            _finish(p)
        elif name.startswith(LEGACY_TRASH) and _lkind(p) == "a directory":
            shutil.rmtree(p, ignore_errors=True)


def _finish(txn: Path) -> None:
    """Remove a transaction that committed or was rolled back: the journal first, so that a kill
    halfway through never leaves a journal without what it describes."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(txn / JOURNAL)
    shutil.rmtree(txn, ignore_errors=True)


def _commit(path: str, root: Path, txn: Path, dirs: list[str], units: list[_Unit]) -> None:
    try:
        with open(txn / JOURNAL, "x") as f:
            json.dump({"dirs": dirs, "units": [[u.rel, u.is_dir, u.had_old] for u in units]}, f)
            f.flush()
            os.fsync(f.fileno())
    except OSError as e:
        _finish(txn)
        raise BundleError(f"{path}: cannot write the install journal in {root} ({e.strerror or e})") from None
    try:
        _apply(root, txn, dirs, units)
        open(txn / COMMITTED, "x").close()
    except BaseException as e:
        try:
            _rollback(root, txn)
        except BaseException as e2:
            raise BundleError(
                f"{path}: install failed ({e}) and so did its rollback ({e2}); the next install finishes the rollback"
            ) from e
        _finish(txn)
        if isinstance(e, OSError):
            raise BundleError(f"{path}: install failed and was rolled back ({type(e).__name__}: {e})") from None
        raise
    _finish(txn)


def install(
    path: str,
    limits: Limits = Limits(),
    hf_cache: bool = False,
    tiktoken_cache: bool = False,
    store: Path | None = None,
) -> dict:
    """Verify and install a bundle into omnitok's asset store (and the standard caches)."""
    root = Path(store) if store else store_dir()
    read_manifest(path, limits)  # a refused manifest writes nothing, not even the store's directory
    try:
        root.mkdir(parents=True, exist_ok=True)
        with _store_lock(root):
            recover(root)
            manifest, caches = _transaction(path, limits, root, hf_cache, tiktoken_cache)
            done = {"bundle": path, "name": manifest["name"], "files": len(manifest["files"]), "store": str(root)}
            for key, what, target, actions in caches:
                try:
                    _apply_cache(actions)
                except OSError as e:
                    raise BundleError(
                        f"{path}: installed into the store ({root}), but writing the {what} ({target}) failed "
                        f"({e.strerror or e})"
                    ) from None
                done[key] = str(target)
    except OSError as e:
        raise BundleError(f"{path}: cannot install into {root} ({type(e).__name__}: {e})") from None
    return done


def _transaction(path: str, limits: Limits, root: Path, hf_cache: bool, tiktoken_cache: bool):
    """Stage, check, plan and commit; the store is unchanged unless it returns."""
    txn = root / f"{STAGING}{uuid.uuid4().hex}"
    txn.mkdir()
    keep = False
    try:
        manifest = check_members(path, limits, txn / "new")
        record = f"bundles/{manifest['name']}-{_digest(manifest)}.json"
        with _Staged(inside(txn / "new", record, "staging directory"), path) as out:
            out(json.dumps(manifest, indent=1, sort_keys=True).encode())
        units = sorted({(unit(e["path"]), e["path"].startswith("hf/")) for e in manifest["files"]})
        dirs, planned = _plan_store(root, [*units, (record, False)])
        caches = []
        if hf_cache:
            caches.append(("hf_cache", "Hugging Face cache", *_plan_hf(manifest, root)))
        if tiktoken_cache:
            caches.append(("tiktoken_cache", "tiktoken cache", *_plan_tiktoken(manifest, root)))
        keep = True  # from here a failed rollback leaves the journal for the next install
        _commit(path, root, txn, dirs, planned)
        keep = False
    finally:
        if not keep:
            shutil.rmtree(txn, ignore_errors=True)
    return manifest, caches


def _digest(manifest: dict) -> str:
    return hashlib.sha256(json.dumps(manifest["files"], sort_keys=True).encode()).hexdigest()[:12]


# --- the records of installed bundles ----------------------------------------------------------


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
        if not stat.S_ISREG(st.st_mode) or st.st_size != e["size"] or _sha256(p) != e["sha256"]:
            out.append(e["path"])
    return out
