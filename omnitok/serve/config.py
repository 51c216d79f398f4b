"""The server's settings: one frozen object, passed to worker processes in the environment
(uvicorn starts each worker from an import string). Secrets are never part of it: the bearer
token is the path of the file that holds it, read by each worker at start; an --l3-url (which may
hold a Redis password) travels in a variable of its own, L3_ENV, and its repr masks the userinfo,
so neither OMNITOK_SERVE_CONFIG nor a logged config shows a password."""

from __future__ import annotations

import ipaddress
import json
import os
import re
from dataclasses import asdict, dataclass, field, fields

from ..errors import UsageError

ENV = "OMNITOK_SERVE_CONFIG"
L3_ENV = "OMNITOK_SERVE_L3_URL"  # --l3-url for the workers, apart from the JSON in ENV
DEFAULT_PORT = 8001
# The Host names a server bound to loopback answers (with any port) unless --allowed-host says
# otherwise: a page on another name that resolves to 127.0.0.1 (DNS rebinding) gets 400.
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")
_HOST_PATTERN = re.compile(r"(\*\.)?[a-z0-9_\-]+(\.[a-z0-9_\-]+)*\.?(:\d{1,5})?|\[[0-9a-f:.]+\](:\d{1,5})?|[0-9a-f:.]+")


def is_loopback(host: str) -> bool:
    """Whether a --host address is reachable from this machine only (localhost, 127.0.0.0/8, ::1)."""
    if host.lower().rstrip(".") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


_NAME = re.compile(r"(\*\.)?[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?)*")
_IPV6 = re.compile(r"[0-9a-f:.]+(%[a-z0-9_.-]+)?")


def host_name(value: str) -> str:
    """A Host header's (or an --allowed-host's) name: lower case, without its port, brackets or
    one trailing dot (`[::1]:8001` -> `::1`, `Example.COM.:80` -> `example.com`); "" (which no
    name matches) for anything else a Host header can hold: a port that is not a number,
    userinfo (`localhost:80@evil`), empty labels (`localhost..`), other characters."""
    value = value.strip().lower()
    port = ""
    if value.startswith("["):
        name, closed, rest = value[1:].partition("]")
        if not closed or (rest and not rest.startswith(":")):
            return ""
        port = rest[1:] if rest else ""
        return name if _IPV6.fullmatch(name) and (not rest or port.isdigit()) else ""
    if value.count(":") > 1:  # a bare IPv6 address: an --allowed-host, never a valid Host header
        return value if _IPV6.fullmatch(value) else ""
    name, colon, port = value.partition(":")
    if colon and not (port.isdigit() and len(port) <= 5):
        return ""
    name = name.removesuffix(".")
    return name if _NAME.fullmatch(name) else ""


@dataclass(frozen=True, repr=False)
class ServeConfig:
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    workers: int = 1
    model: str | None = None  # requests without model_id: this, else $OMNITOK_MODEL, else gpt-4o
    auth_token_file: str | None = None
    max_body_mb: float = 10.0
    max_records: int = 10_000  # texts or records in one batch request
    request_timeout: float = 60.0  # seconds of library work per request; then 504
    graceful_timeout: float = 30.0  # on SIGTERM: seconds in-flight requests get to finish
    cors_origins: tuple[str, ...] = ()  # CORS is off unless origins are named
    online: bool | None = None  # None: the config's prefer_offline (offline)
    strict: bool = False
    engine: str = "auto"
    cache: str = "auto"
    cache_dir: str | None = None
    l3_url: str | None = None  # may hold a password: never in to_env()'s JSON nor in repr()
    compress_method: str = "auto"
    threads: int | None = None  # library threads per worker; None: min(32, cores + 4)
    log_level: str = "info"
    # Security bounds (issue 23); README "Security" says what each protects.
    no_auth: bool = False  # --no-auth: serve a non-loopback address without a token, on purpose
    allowed_hosts: tuple[str, ...] = ()  # Host headers answered; (): the loopback names on loopback, else any
    max_upstream_per_request: int = 64  # provider calls one request may cause; beyond: 422
    max_upstream_concurrency: int = 16  # provider calls in flight at once, server-wide
    body_timeout: float = 30.0  # seconds for a whole request body to arrive; then 408
    max_inflight_mb: float = 256.0  # request bodies being read at once, in total; beyond: 503
    cpu_workers: int | None = None  # processes for CPU-heavy work (validate, compress); None: the cores
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        from ..numbers import checked

        checked("--port", self.port, 0, 65535, integer=True)
        checked("--workers", self.workers, 1, 1024, integer=True)
        checked("--max-body-mb", self.max_body_mb, 0, low_open=True)
        checked("--max-records", self.max_records, 1, integer=True)
        checked("--timeout", self.request_timeout, 0, low_open=True)
        checked("--graceful-timeout", self.graceful_timeout, 0)
        if self.threads is not None:
            checked("--threads", self.threads, 1, 1024, integer=True)
        checked("--max-upstream-per-request", self.max_upstream_per_request, 1, 1_000_000, integer=True)
        checked("--max-upstream-concurrency", self.max_upstream_concurrency, 1, 1024, integer=True)
        checked("--body-timeout", self.body_timeout, 0, low_open=True)
        checked("--max-inflight-mb", self.max_inflight_mb, 0, low_open=True)
        if self.max_inflight_mb < self.max_body_mb:
            raise UsageError(
                f"--max-inflight-mb ({self.max_inflight_mb:g}) must be at least --max-body-mb "
                f"({self.max_body_mb:g}): a body the server takes must fit in what it reads at once"
            )
        if self.cpu_workers is not None:
            checked("--cpu-workers", self.cpu_workers, 1, 1024, integer=True)
        object.__setattr__(self, "cors_origins", tuple(self.cors_origins))
        object.__setattr__(self, "allowed_hosts", tuple(self.allowed_hosts))
        for name in self.allowed_hosts:
            if not isinstance(name, str) or not (name == "*" or _HOST_PATTERN.fullmatch(name.strip().lower())):
                shown = repr(name)[:80]
                raise UsageError(f"--allowed-host must be a host name, *.domain or '*', not {shown}")
        if self.no_auth and self.auth_token_file:
            raise UsageError("--no-auth and --auth-token-file contradict each other: give one")
        if not (self.auth_token_file or self.no_auth or is_loopback(self.host)):
            raise UsageError(
                f"--host {self.host} is reachable from other machines: give --auth-token-file FILE "
                "(or --no-auth to serve it without a token on purpose)"
            )

    @property
    def max_body_bytes(self) -> int:
        return int(self.max_body_mb * 1024 * 1024)

    @property
    def max_inflight_bytes(self) -> int:
        return int(self.max_inflight_mb * 1024 * 1024)

    @property
    def host_names(self) -> frozenset[str] | None:
        """The Host names answered (any port), None for any: --allowed-host ('*' among them: any),
        else the loopback names (and the bound name) when bound to loopback, else any."""
        if "*" in self.allowed_hosts:
            return None
        if self.allowed_hosts:
            return frozenset(host_name(h) for h in self.allowed_hosts)
        if is_loopback(self.host):
            return frozenset({*LOOPBACK_NAMES, host_name(self.host)})
        return None

    def __repr__(self) -> str:
        from ..redact import redact_url

        shown = {f.name: getattr(self, f.name) for f in fields(self)}
        if self.l3_url:
            shown["l3_url"] = redact_url(self.l3_url, keep_user=True)
        return f"ServeConfig({', '.join(f'{k}={v!r}' for k, v in shown.items())})"

    @property
    def access_log(self) -> bool:
        """Whether uvicorn writes an access line per request (the levels that show it)."""
        return self.log_level in ("trace", "debug", "info")

    def to_env(self) -> dict[str, str]:
        """The variables a worker process reads the config from (from_env): the JSON in ENV,
        and the L3 URL, if any, in L3_ENV (never in the JSON: it may hold a password)."""
        data = asdict(self)
        url = data.pop("l3_url")
        env = {ENV: json.dumps(data)}
        if url:
            env[L3_ENV] = url
        return env

    @classmethod
    def from_env(cls) -> ServeConfig:
        raw = os.environ.get(ENV)
        if not raw:
            return cls()
        data = json.loads(raw)
        known = {f.name for f in fields(cls)} - {"l3_url"}
        return cls(**{k: v for k, v in data.items() if k in known}, l3_url=os.environ.get(L3_ENV) or None)

    def read_token(self) -> str | None:
        """The bearer token from auth_token_file (surrounding whitespace stripped), or None."""
        if not self.auth_token_file:
            return None
        try:
            with open(self.auth_token_file, encoding="utf-8") as f:
                token = f.read().strip()
        except (OSError, UnicodeDecodeError) as e:
            raise UsageError(f"--auth-token-file {self.auth_token_file}: cannot read it ({type(e).__name__})") from None
        if not token:
            raise UsageError(f"--auth-token-file {self.auth_token_file} is empty")
        return token
