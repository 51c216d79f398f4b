"""Old path: moved to omnitok.cache.cached_strategy (ARCHITECTURE.md, "Old module paths")."""

from .cached_strategy import CachedStrategy

__all__ = ["CachedStrategy"]
