"""Installing is one transaction under the store's lock:

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
a kill leaves the journal, and the next install rolls back before it starts, or the next reader
of the store does (omnitok.assets.transactions, where the transaction code lives: below the
readers). Either way the store ends byte-for-byte as it was, or with the whole bundle in place. The caches are filled after the
commit, each file written under a temporary name and renamed.

Reading and checking the archive is reading.py, planning the destinations plan.py, the standard
caches caches.py, the records of installed bundles records.py.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from pathlib import Path

from ..assets import transactions
from ..assets.transactions import COMMITTED, JOURNAL, STAGING, Unit, finish, rollback
from .caches import apply_cache, plan_hf_cache, plan_tiktoken_cache
from .manifest import inside, unit
from .plan import plan_store, store_dir
from .reading import Limits, Staged, check_members, read_manifest
from .sources import BundleError

# --- the transaction --------------------------------------------------------------------------


def _apply(root: Path, txn: Path, dirs: list[str], units: list[Unit]) -> None:
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


def recover(root: Path) -> None:
    """Roll back and remove what killed installs left; call with the store's lock held."""
    try:
        transactions.recover(root)
    except transactions.RecoveryError as e:
        raise BundleError(str(e)) from None


def _commit(path: str, root: Path, txn: Path, dirs: list[str], units: list[Unit]) -> None:
    try:
        with open(txn / JOURNAL, "x") as f:
            json.dump({"dirs": dirs, "units": [[u.rel, u.is_dir, u.had_old] for u in units]}, f)
            f.flush()
            os.fsync(f.fileno())
    except OSError as e:
        finish(txn)
        raise BundleError(f"{path}: cannot write the install journal in {root} ({e.strerror or e})") from None
    try:
        _apply(root, txn, dirs, units)
        open(txn / COMMITTED, "x").close()
    except BaseException as e:
        try:
            rollback(root, txn)
        except BaseException as e2:
            raise BundleError(
                f"{path}: install failed ({e}) and so did its rollback ({e2}); the next install finishes the rollback"
            ) from e
        finish(txn)
        if isinstance(e, OSError):
            raise BundleError(f"{path}: install failed and was rolled back ({type(e).__name__}: {e})") from None
        raise
    finish(txn)


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
        with transactions.store_lock(root):
            recover(root)
            manifest, caches = _transaction(path, limits, root, hf_cache, tiktoken_cache)
            done = {"bundle": path, "name": manifest["name"], "files": len(manifest["files"]), "store": str(root)}
            for key, what, target, actions in caches:
                try:
                    apply_cache(actions)
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
        with Staged(inside(txn / "new", record, "staging directory"), path) as out:
            out(json.dumps(manifest, indent=1, sort_keys=True).encode())
        units = sorted({(unit(e["path"]), e["path"].startswith("hf/")) for e in manifest["files"]})
        dirs, planned = plan_store(root, [*units, (record, False)])
        caches = []
        if hf_cache:
            caches.append(("hf_cache", "Hugging Face cache", *plan_hf_cache(manifest, root)))
        if tiktoken_cache:
            caches.append(("tiktoken_cache", "tiktoken cache", *plan_tiktoken_cache(manifest, root)))
        keep = True  # from here a failed rollback leaves the journal for the next install
        _commit(path, root, txn, dirs, planned)
        keep = False
    finally:
        if not keep:
            shutil.rmtree(txn, ignore_errors=True)
    return manifest, caches


def _digest(manifest: dict) -> str:
    return hashlib.sha256(json.dumps(manifest["files"], sort_keys=True).encode()).hexdigest()[:12]
