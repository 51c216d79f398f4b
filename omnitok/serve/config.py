"""The server's settings: one frozen object, passed to worker processes as JSON in the
environment (uvicorn starts each worker from an import string). The bearer token itself is never
part of it: only the path of the file that holds it, read by each worker at start."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, fields

from ..errors import UsageError

ENV = "OMNITOK_SERVE_CONFIG"
DEFAULT_PORT = 8001


@dataclass(frozen=True)
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
    l3_url: str | None = None
    compress_method: str = "auto"
    threads: int | None = None  # library threads per worker; None: min(32, cores + 4)
    log_level: str = "info"
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
        object.__setattr__(self, "cors_origins", tuple(self.cors_origins))

    @property
    def max_body_bytes(self) -> int:
        return int(self.max_body_mb * 1024 * 1024)

    def to_env(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_env(cls) -> ServeConfig:
        raw = os.environ.get(ENV)
        if not raw:
            return cls()
        data = json.loads(raw)
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

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
