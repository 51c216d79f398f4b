"""The results directory of a run spread over workers (`omnitok count --ray`): part files,
committed whole or not at all.

The layout is the Hadoop/Spark committer's: workers write their parts under DIR/_temporary/<run>/
(`prepare_output` makes it, `write_part` writes one), the driver moves them into DIR once every
shard is done and then writes DIR/_SUCCESS (`commit_parts`); a failed run is dropped
(`discard_run`). Readers (pyarrow, Spark, pandas) skip names that start with "_" or ".", so a run
killed at any point before the commit leaves nothing a reader takes for the dataset. DIR is a
local path or any URI a pyarrow filesystem writes.
"""

from __future__ import annotations

import contextlib
import json
import os

from ..errors import OmnitokError, UsageError
from .shards import filesystem

TEMPORARY = "_temporary"
SUCCESS = "_SUCCESS"
_OWNER = "_owner.json"


def _part_name(index: int) -> str:
    return f"part-{index:05d}.parquet"


def _reason(e: OSError) -> str:
    """An OSError's cause in words (pyarrow's own messages repeat the path and the errno)."""
    return os.strerror(e.errno) if e.errno else str(e)


def _output_error(output: str, e: OSError):
    from .output import OutputError

    return OutputError(f"{output}: cannot write the results: {_reason(e)}")


def _alive(pid) -> bool:
    try:
        os.kill(int(pid), 0)
    except (ProcessLookupError, ValueError, TypeError, OverflowError):
        return False
    except PermissionError:
        return True  # someone else's process
    return True


def _sweep_stale(fs, base: str, output: str) -> None:
    """Remove DIR/_temporary left by runs that never committed, saying so once; refuse while the
    run that owns it is alive on this host (another run writing into DIR)."""
    import socket

    import pyarrow.fs as pafs

    tmp = f"{base}/{TEMPORARY}"
    parts = 0
    for run in fs.get_file_info(pafs.FileSelector(tmp)):
        if run.type != pafs.FileType.Directory:
            continue
        try:
            with fs.open_input_stream(f"{run.path}/{_OWNER}") as f:
                owner = json.loads(f.read())
        except (OSError, ValueError):
            owner = {}
        if isinstance(owner, dict) and owner.get("host") == socket.gethostname() and _alive(owner.get("pid")):
            raise UsageError(
                f"{output}: another run (pid {owner['pid']}) is writing into it; wait for it to end or give another directory"
            )
        files = fs.get_file_info(pafs.FileSelector(run.path))
        parts += sum(1 for f in files if f.base_name.startswith("part-"))
    fs.delete_dir(tmp)
    from .. import notices

    notices.warn_once(
        f"stale-output:{output}",
        f"{output}: removed {TEMPORARY}/ left by an unfinished run ({parts} part files, never committed)",
    )


def prepare_output(output: str) -> str:
    """The results directory, made ready for a run; returns the run's own directory under
    DIR/_temporary, where the workers write. DIR is created if missing; a DIR that holds anything
    but a stale _temporary (a complete dataset, another run's files) is refused, naming what it
    holds, so that a rerun never mixes with nor silently replaces earlier results. A stale
    _temporary (a run killed before its commit) is removed, with one warning. A DIR that cannot
    be written is an OutputError (exit 1)."""
    import socket
    import uuid

    import pyarrow.fs as pafs

    fs, base = filesystem(output)
    try:
        info = fs.get_file_info(base)
        if info.type == pafs.FileType.File:
            raise UsageError(f"{output}: is a file; --ray writes a directory of Parquet files")
        if info.type == pafs.FileType.Directory:
            entries = fs.get_file_info(pafs.FileSelector(base))
            names = sorted(e.base_name for e in entries)
            if SUCCESS in names:
                parts = sum(1 for n in names if n.startswith("part-"))
                raise UsageError(
                    f"{output}: the directory is not empty: it holds a complete dataset ({SUCCESS}, {parts} part "
                    "files); give a new or empty directory, or remove it first"
                )
            if [n for n in names if n != TEMPORARY]:
                shown = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
                raise UsageError(f"{output}: the directory is not empty ({shown}); give a new or empty one")
            if names:
                _sweep_stale(fs, base, output)
        run = f"{base}/{TEMPORARY}/run-{uuid.uuid4().hex[:12]}"
        fs.create_dir(run, recursive=True)
        with fs.open_output_stream(f"{run}/{_OWNER}") as f:
            f.write(json.dumps({"host": socket.gethostname(), "pid": os.getpid()}).encode())
    except OSError as e:
        raise _output_error(output, e) from None
    return run


def commit_parts(output: str, run: str, count: int) -> None:
    """Publish a finished run: each of its `count` parts moved from `run` into DIR, the run's
    _temporary removed, then DIR/_SUCCESS (empty) written. A part missing is an error (nothing
    moved)."""
    import pyarrow.fs as pafs

    fs, base = filesystem(output)
    try:
        have = {f.base_name for f in fs.get_file_info(pafs.FileSelector(run)) if f.type == pafs.FileType.File}
        missing = [i for i in range(count) if _part_name(i) not in have]
        if missing:
            raise OmnitokError(f"{output}: the parts of shards {missing[:10]} were not written; nothing was committed")
        for i in range(count):
            fs.move(f"{run}/{_part_name(i)}", f"{base}/{_part_name(i)}")
        fs.delete_dir(f"{base}/{TEMPORARY}")
        with fs.open_output_stream(f"{base}/{SUCCESS}"):
            pass
    except OSError as e:
        raise _output_error(output, e) from None


# How long discard_run keeps trying to remove a failed run's directory while its workers' last
# writes land in it.
DISCARD_SECONDS = 5.0


def discard_run(output: str, run: str) -> None:
    """Drop a run that failed: its directory, and DIR/_temporary when no other run is left there.
    Workers may still be writing when the run fails (one shard's write raised while another's was
    under way). On a local disk RUN is first renamed aside, within _temporary: a write that starts
    after the rename fails, since nothing recreates RUN (write_part writes into it, never makes
    it), so no file can land in what is being removed. Elsewhere (an object store has no atomic
    rename) a file made while the directory is being removed fails that removal (ENOTEMPTY), so it
    is tried again, every 50 ms for up to DISCARD_SECONDS; a writer that outlasts them leaves a
    stale _temporary, which readers skip and the next run removes."""
    import time
    import uuid

    import pyarrow.fs as pafs

    fs, base = filesystem(output)
    if isinstance(fs, pafs.LocalFileSystem):
        aside = f"{base}/{TEMPORARY}/.discarded-{uuid.uuid4().hex[:12]}"
        try:
            fs.move(run, aside)
            run = aside
        except OSError:
            pass  # gone already, or not movable: removed in place below
    deadline = time.monotonic() + DISCARD_SECONDS
    while True:
        try:
            if fs.get_file_info(run).type != pafs.FileType.NotFound:
                fs.delete_dir(run)
            if not fs.get_file_info(pafs.FileSelector(f"{base}/{TEMPORARY}", allow_not_found=True)):
                with contextlib.suppress(FileNotFoundError):
                    fs.delete_dir(f"{base}/{TEMPORARY}")
            return
        except OSError:
            if time.monotonic() >= deadline:
                return  # left as a stale _temporary: readers skip it, the next run removes it
            time.sleep(0.05)


def write_part(table, run: str, index: int) -> None:
    """Results as RUN/part-<index>.parquet (RUN: the run's directory under DIR/_temporary, as
    prepare_output gave it; a retried shard overwrites its own part): on a local disk under a
    hidden name first, then renamed, so that a worker killed while writing leaves no half part
    for the commit to publish."""
    import uuid

    import pyarrow.fs as pafs
    import pyarrow.parquet as pq

    fs, base = filesystem(run)
    final = f"{base}/{_part_name(index)}"
    if isinstance(fs, pafs.LocalFileSystem):
        tmp = f"{base}/.part-{index:05d}.{uuid.uuid4().hex[:8]}.tmp"
        try:
            pq.write_table(table, tmp, filesystem=fs)
            fs.move(tmp, final)
        except BaseException:
            with contextlib.suppress(OSError):
                fs.delete_file(tmp)
            raise
    else:  # an object store: an object appears whole when its upload completes
        pq.write_table(table, final, filesystem=fs)
