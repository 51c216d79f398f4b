"""The asset store's install transactions, as far as a reader needs them: what an install killed
midway left (`.staging-<id>/` with its journal) is rolled back from the journal, so the store is
byte-for-byte as it was before that install.

omnitok.bundle.install writes the transactions (staging, journal, moves, commit) and calls
`recover` first, under the store's lock. A reader calls `settled(root)` before it looks in the
store: once a process, where a killed install left a transaction and no install holds the lock
now, it rolls back there and then, so that counting never uses half of a bundle (or finds a
model gone that the install had moved aside) until the next install. Where an install holds the
lock, its transaction is alive: the reader goes on (installs move their units only at the end,
in a few renames)."""

from __future__ import annotations

import contextlib
import functools
import json
import os
import shutil
import stat
import uuid
from dataclasses import dataclass
from pathlib import Path

STAGING = ".staging-"
LEGACY_TRASH = ".old-"
JOURNAL = "journal.json"
COMMITTED = "committed"


class RecoveryError(OSError):
    """A killed install's rollback that could not be done (the next install tries again)."""


@dataclass(frozen=True)
class Unit:
    """What a transaction replaces as a whole: a file, or a Hugging Face model's directory."""

    rel: str
    is_dir: bool
    had_old: bool


def kind_of(p: Path) -> str | None:
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


def under(root: Path, rel: str) -> Path:
    """root/rel, proven to stay under root (symbolic links on the way included), else ValueError."""
    base = os.path.realpath(root)
    dest = os.path.join(base, rel)
    real_parent = os.path.realpath(os.path.dirname(dest))
    if os.path.commonpath([base, real_parent]) != base or os.path.basename(dest) in ("", ".", ".."):
        raise ValueError(f"{rel!r} would be outside {root}")
    return Path(real_parent) / os.path.basename(dest)


def _discard(path: Path, trash: Path) -> None:
    trash.mkdir(exist_ok=True)
    os.rename(path, trash / uuid.uuid4().hex)


def rollback(root: Path, txn: Path) -> None:
    """Undo a transaction that did not commit, from its journal (idempotent: a rollback that was
    itself interrupted is finished by the next one)."""
    try:
        journal = json.loads((txn / JOURNAL).read_text())
        dirs, units = journal["dirs"], [Unit(*u) for u in journal["units"]]
    except (OSError, ValueError, KeyError, TypeError):
        return  # no complete journal: nothing was moved
    trash = txn / "trash"
    for u in reversed(units):
        dest = under(root, u.rel)
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
        with contextlib.suppress(OSError, ValueError):
            os.rmdir(under(root, d))


def finish(txn: Path) -> None:
    """Remove a transaction that committed or was rolled back: the journal first, so that a kill
    halfway through never leaves a journal without what it describes."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(txn / JOURNAL)
    shutil.rmtree(txn, ignore_errors=True)


def recover(root: Path) -> None:
    """Roll back and remove what killed installs left; call with the store's lock held.
    RecoveryError where a rollback fails."""
    for name in sorted(os.listdir(root)):
        p = root / name
        if name.startswith(STAGING):
            if kind_of(p) != "a directory":
                os.unlink(p)
                continue
            if not (p / COMMITTED).exists():
                try:
                    rollback(root, p)
                except (OSError, ValueError) as e:
                    raise RecoveryError(f"{root}: cannot roll back the interrupted install in {name} ({e})") from None
            finish(p)
        elif name.startswith(LEGACY_TRASH) and kind_of(p) == "a directory":
            shutil.rmtree(p, ignore_errors=True)


@contextlib.contextmanager
def store_lock(root: Path, wait: bool = True):
    """The store's directory itself is the lock (flock on its descriptor): no lock file, so a
    refused install leaves the store exactly as it was. Yields whether it is held (always, when
    `wait`; without waiting, False where another process holds it)."""
    import fcntl

    fd = os.open(root, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)


@functools.cache
def settled(root: Path) -> Path:
    """`root`, once a process: a killed install's transaction there rolled back first, where no
    install holds the lock now (see the module's docstring). Never fails a read: a store that
    cannot be settled is read as it is (the next install reports why)."""
    try:
        left = any(name.startswith(STAGING) for name in os.listdir(root))
    except OSError:
        return root  # no store (yet), or unreadable: the readers say what they find
    if left:  # (ImportError: no fcntl on this platform, so no lock to take: left as it is)
        with contextlib.suppress(OSError, ValueError, ImportError), store_lock(root, wait=False) as held:
            if held:
                recover(root)
    return root
