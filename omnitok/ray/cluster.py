"""The cluster: how a stage runs on Ray (`RayOptions`), joining or starting Ray (`connect`,
failing fast where a cluster cannot be reached), and Ray's own output kept quiet unless asked."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from dataclasses import dataclass

import ray
import ray.data

from omnitok.bundle.shipping import BundleAsset
from omnitok.errors import OmnitokError, UsageError
from omnitok.io.shards import CLUSTER_SHARD
from omnitok.numbers import checked


@dataclass(frozen=True, kw_only=True)
class RayOptions:
    """How a stage runs on Ray; checked once when made, with the command line's messages.

    address: the cluster (`connect`: "auto", "local", ray://HOST:10001, HOST:6379; None: auto).
    num_cpus: CPUs an actor takes (0 or more). concurrency: how many actors (--ray-workers; None:
    one a `num_cpus` of the cluster). batch_size: rows a batch in a user's pipeline (None: the
    stage's own: count 4096, compress 256, validate 1024). shard_bytes: input bytes a shard of
    `count_paths`. runtime_env: Ray's runtime env for the actors. bundles: tokenizer bundles
    (paths, URIs or BundleAssets) shipped to every node. allow_estimate: let workers count with
    an estimate where tokenizer files are missing (else one AssetError before the job). probe:
    build the core on one worker before the job. init: ray.init's arguments when a local Ray
    starts. verbose: Ray's own output (worker lines, progress bars, log lines) on stderr; quiet
    (errors only) by default."""

    address: str | None = "auto"
    num_cpus: float = 1
    concurrency: int | None = None
    batch_size: int | None = None
    shard_bytes: int = CLUSTER_SHARD
    runtime_env: dict | None = None
    bundles: tuple[str | BundleAsset, ...] = ()
    allow_estimate: bool = False
    probe: bool = True
    init: dict | None = None
    verbose: bool = False

    def __post_init__(self):
        if self.address is not None and not (isinstance(self.address, str) and self.address.strip()):
            raise UsageError(f"--ray-address must be auto, local, ray://HOST:PORT or HOST:PORT, not {self.address!r}")
        checked("num_cpus", self.num_cpus, 0)
        checked("--ray-workers", self.concurrency, 1, integer=True)
        checked("batch_size", self.batch_size, 1, integer=True)
        checked("shard_bytes", self.shard_bytes, 1, integer=True)
        for name in ("runtime_env", "init"):
            if getattr(self, name) is not None and not isinstance(getattr(self, name), dict):
                raise UsageError(f"{name} must be a mapping, not {type(getattr(self, name)).__name__}")
        if isinstance(self.bundles, (str, BundleAsset)) or not all(
            isinstance(b, (str, os.PathLike, BundleAsset)) for b in self.bundles
        ):
            raise UsageError("bundles must be a list of bundle paths, URIs or BundleAssets (--bundle)")
        object.__setattr__(self, "bundles", tuple(b if isinstance(b, BundleAsset) else str(b) for b in self.bundles))
        for name in ("allow_estimate", "probe", "verbose"):
            if not isinstance(getattr(self, name), bool):
                raise UsageError(f"{name} must be true or false, not {getattr(self, name)!r}")

    def ray_init(self) -> dict:
        """ray.init's arguments: `init`, and unless verbose, Ray quiet (no worker output forwarded
        to this process, log lines from errors up)."""
        quiet = {} if self.verbose else {"log_to_driver": False, "logging_level": "error"}
        return {**quiet, **(self.init or {})}


# --- the cluster ------------------------------------------------------------------------------------


def connect(address: str | None = "auto", *, quiet: bool = False, **init) -> bool:
    """Join the Ray cluster at `address` (ray://host:10001, host:6379); "auto" (or None) joins the
    running one (RAY_ADDRESS, or one started by `ray start` on this host) and else starts a local
    Ray with `init`'s ray.init arguments; "local" always starts a local Ray. Nothing happens when
    Ray is already initialised. Returns whether this call initialised Ray. A cluster that cannot
    be reached is one UsageError (ray:// without Ray Client) or OmnitokError, within about 20 s,
    never Ray's endless retries. `quiet`: Ray's C++ core logs nothing below fatal on this
    process's stderr (its level is read once, as Ray starts here: see `_core_quiet`)."""
    if ray.is_initialized():
        return False
    with _core_quiet(quiet):
        _connect(address, init)
    return True


def _connect(address: str | None, init: dict) -> None:
    init.setdefault("include_dashboard", False)
    init.setdefault("logging_level", "warning")
    joining = {k: v for k, v in init.items() if k not in ("num_cpus", "object_store_memory")}
    target = address if address not in (None, "", "auto", "local") else None
    if target is None and address != "local":
        target = os.environ.get("RAY_ADDRESS") or None
    if target is not None and target not in ("auto", "local"):
        _join(target, joining)
    elif address != "local" and (target == "auto" or _local_cluster()):
        try:
            ray.init(address="auto", **joining)
        except ConnectionError:  # what a stopped cluster left behind
            if target == "auto":
                raise OmnitokError("RAY_ADDRESS=auto: no running Ray cluster found on this host") from None
            ray.init(**init)
    else:
        ray.init(**init)


@contextlib.contextmanager
def _core_quiet(quiet: bool):
    """While Ray starts in this process: its C++ core's log level fatal (RAY_BACKEND_LOG_LEVEL,
    unless set already; read once, here), and this process's stderr (file descriptor 2) closed to
    the one line the core writes about that setting. Errors still arrive as exceptions."""
    if not quiet:
        yield
        return
    key = "RAY_BACKEND_LOG_LEVEL"
    given = os.environ.get(key)
    os.environ[key] = given or "fatal"
    sys.stderr.flush()
    saved = os.dup(2)
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 2)
    os.close(null)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        if given is None:
            os.environ.pop(key, None)


# A join gives up after one connection attempt (Ray's own default is 20 of them, each ~35 s: a
# wrong address looked like a hang); the CLI also shortens each attempt's wait (ray_cli).
JOIN_ATTEMPTS = "1"
PROBE_SECONDS = 5.0


def _join(target: str, joining: dict) -> None:
    """ray.init(address=target), failing fast: Ray Client's package checked first for ray://, and
    the cluster's port probed before Ray is asked (a refused or silent port is one error now)."""
    if target.startswith("ray://"):
        from ray._private.utils import get_ray_client_dependency_error

        if get_ray_client_dependency_error() is not None:
            raise UsageError(
                f"{target}: a ray:// address needs Ray Client (pip install 'ray[client]=={ray.__version__}'), "
                "or give the cluster's GCS address, HOST:6379"
            )
    else:
        _probe_address(target)
    key = "RAY_gcs_server_port_wait_time_s"  # read by ray.init's connect loop: attempts, ~1 s apart
    given = os.environ.get(key)
    os.environ[key] = given or JOIN_ATTEMPTS
    try:
        ray.init(address=target, **joining)
    except (ConnectionError, RuntimeError) as e:
        if ray.is_initialized():
            raise
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise OmnitokError(f"cannot reach the Ray cluster at {target}: {first}") from None
    finally:
        if given is None:
            os.environ.pop(key, None)


def _probe_address(target: str) -> None:
    """A TCP connection to the cluster's GCS address (HOST:PORT), as Ray will make it (localhost
    as this node's address), within PROBE_SECONDS; an address that is not HOST:PORT is left to Ray."""
    import socket

    from ray._private import services

    host, sep, port = target.rpartition(":")
    if not sep or not host or not port.isdigit():
        return
    host = host.strip("[]")
    hosts = [host]
    with contextlib.suppress(Exception):  # Ray's own lookup; the probe of the address as given stands
        hosts.append(services.resolve_ip_for_localhost(host))
    last: OSError | None = None
    for h in dict.fromkeys(hosts):
        try:
            socket.create_connection((h, int(port)), timeout=PROBE_SECONDS).close()
            return
        except OSError as e:
            last = e
    reason = "timed out" if isinstance(last, TimeoutError) else (last.strerror or str(last))
    raise OmnitokError(f"cannot reach the Ray cluster at {target}: {reason}")


def disconnect() -> None:
    """Leave Ray (and stop the local Ray that `connect` started, if any)."""
    ray.shutdown()


def _local_cluster() -> bool:
    """Whether `ray start` left a cluster on this host to join."""
    import tempfile

    return os.path.exists(os.path.join(tempfile.gettempdir(), "ray", "ray_current_cluster"))


def slots(num_cpus: float) -> int:
    cpus = ray.cluster_resources().get("CPU", 1)
    return max(1, int(cpus / num_cpus + 1e-9)) if num_cpus > 0 else max(1, int(cpus))


@contextlib.contextmanager
def quiet(verbose: bool):
    """Ray Data's own output for one job: progress bars, the execution banner and its log lines
    (the `ray` loggers below errors) only when `verbose`; as they were afterwards."""
    ctx = ray.data.DataContext.get_current()
    names = ("enable_progress_bars", "print_on_execution_start")
    before = [getattr(ctx, n) for n in names], ctx.execution_options.verbose_progress
    loggers = [logging.getLogger(n) for n in ("ray", "ray.data")]
    levels = [lg.level for lg in loggers]
    for n in names:
        setattr(ctx, n, verbose)
    ctx.execution_options.verbose_progress = verbose
    if not verbose:
        for lg in loggers:
            lg.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for n, v in zip(names, before[0], strict=True):
            setattr(ctx, n, v)
        ctx.execution_options.verbose_progress = before[1]
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)
