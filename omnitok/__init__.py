"""omnitok: token counting for LLM workloads, offline-first.

    >>> import omnitok
    >>> omnitok.count("hello world", model="gpt-4o").tokens
    2

Heavy modules load on first use, so `import omnitok` stays cheap.
"""

from . import cpu as _cpu  # noqa: F401 - its first sample starts --jobs auto's window (omnitok.cpu)
from ._version import __version__

__all__ = [
    "__version__",
    "Cache",
    "CacheSettings",
    "compress",
    "Compressor",
    "CompressOptions",
    "count",
    "count_batch",
    "count_files",
    "decode",
    "encode",
    "Encoder",
    "load_tokenizer",
    "resolve",
    "Counter",
    "CountOptions",
    "CountResult",
    "OmnitokError",
    "pre_download",
    "tokenize",
    "TokenizerSettings",
    "truncate",
    "validate",
    "ValidateOptions",
]

_LAZY = {
    "Cache": "cache_api",
    "CacheSettings": "cache",
    "compress": "compression",
    "Compressor": "compression",
    "CompressOptions": "options",
    "count": "counter",
    "count_batch": "counter",
    "count_files": "counter",
    "decode": "tokens",
    "encode": "tokens",
    "Encoder": "tokens",
    "load_tokenizer": "counter",
    "resolve": "counter",
    "Counter": "counter",
    "CountOptions": "options",
    "CountResult": "counter",
    "OmnitokError": "errors",
    "pre_download": "bundle",
    "tokenize": "tokens",
    "TokenizerSettings": "config",
    "truncate": "tokens",
    "validate": "validation",
    "ValidateOptions": "options",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        module = importlib.import_module(f".{_LAZY[name]}", __name__)
        value = getattr(module, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'omnitok' has no attribute {name!r}")
