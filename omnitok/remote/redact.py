"""Moved to omnitok.redact (the ground layer), where config and the cache use it too; kept so that
`omnitok.remote.redact` imports keep working."""

from ..redact import *  # noqa: F403
from ..redact import excerpt, origin, redact_url, scrub, split_userinfo, url_secrets  # noqa: F401
