"""The errors users see. Each carries a message that says what was wrong and where, and the
exit code the CLI returns for it (see README "Exit codes")."""

from __future__ import annotations

# Exit codes, documented in the README.
EXIT_OK = 0
EXIT_ERROR = 1  # bad input (stopped at the first bad record), missing asset, runtime failure
EXIT_USAGE = 2  # bad command line (unknown model, bad option value): same code click uses
EXIT_OVER_LIMIT = 3  # --max-tokens: at least one record is over the limit
EXIT_BAD_RECORDS = 4  # --on-error skip|record: the run finished but some records were bad
EXIT_NOT_EXACT = 5  # --strict: a count would not be exact (no exact strategy, or a fallback)
EXIT_GATE_FAILED = 6  # validate: a quality threshold failed
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143  # SIGTERM (128 + 15), as a shell reports a process it ended

VALUE_LIMIT = 200  # characters of one value from data (a model id, a field, an encoding) a message shows
_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def printable(text: str) -> str:
    """`text` fit for a terminal: every character Python would not print raw (controls such as
    ESC, BEL and CR, bidi overrides and other format characters, line separators, lone
    surrogates) written as its escape (`\\x1b`, `\\u202e`), so text from data can neither move
    the cursor, clear the screen nor reorder what a reader sees. The one escaper every message
    to a terminal and every table cell goes through."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else _ESCAPES.get(c) or _escape(ord(c)) for c in text)


def _escape(n: int) -> str:
    return f"\\x{n:02x}" if n < 0x100 else f"\\u{n:04x}" if n < 0x10000 else f"\\U{n:08x}"


def shown(value, limit: int = VALUE_LIMIT, quote: bool = True) -> str:
    """A value from data as a message shows it: quoted (as repr quotes it), escaped (printable)
    and cut to `limit` characters with an ellipsis and its length, so a 5,000-character model id
    makes a one-line message."""
    text = str(value)
    cut = len(text) > limit
    head = text[:limit] if cut else text
    head = repr(head) if quote else printable(head)
    return f"{head}... ({len(text):,} characters)" if cut else head


class OmnitokError(Exception):
    """Base class: an error with a user-facing message and an exit code."""

    exit_code = EXIT_ERROR

    def __reduce__(self):  # rebuilt without __init__: subclasses' own arguments are not in args
        return _rebuild, (type(self), self.args, self.__dict__)

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class UsageError(OmnitokError):
    """A bad option value or combination."""

    exit_code = EXIT_USAGE


class UnknownModelError(UsageError):
    """A model id no registry entry matches."""

    def __init__(self, model: str, suggestions: list[str]):
        hint = None
        if suggestions:
            hint = "did you mean: " + ", ".join(suggestions) + "?"
        super().__init__(
            f"unknown model {shown(model)}; `omnitok models` lists the known ones, "
            "and --encoding picks an encoding directly",
            hint,
        )
        self.model = model
        self.suggestions = suggestions


class UnknownEncodingError(UsageError):
    def __init__(self, encoding: str, known: list[str]):
        super().__init__(f"unknown encoding {shown(encoding)}; known: {', '.join(known)}")
        self.encoding = encoding


class UpstreamLimitError(UsageError):
    """One request would make more provider calls than its budget allows (omnitok serve
    --max-upstream-per-request). The request's fault, not the provider's: never a reason to count
    offline instead (omnitok.strategy_chain.Fallback lets it through)."""

    def __init__(self, limit: int):
        super().__init__(
            f"this request needs more than {limit} provider calls, the limit for one request "
            "(--max-upstream-per-request); send fewer uncached texts a request"
        )
        self.limit = limit


class NotExactError(OmnitokError):
    """--strict: the count would come from an estimate."""

    exit_code = EXIT_NOT_EXACT


class RemoteError(OmnitokError):
    """An online count API failed (after its retries); the message never holds a credential."""

    def __init__(self, provider: str, message: str, status: int | None = None):
        super().__init__(f"{provider}: {message}")
        self.provider = provider
        self.status = status


class AssetError(OmnitokError):
    """A tokenizer file that is missing or fails verification."""


class WorkerLostError(OmnitokError):
    """A forked worker process ended (killed: the OOM killer, kill -9) while it held a task."""


class InputError(OmnitokError):
    """A bad input record or file, located by source and line (or row)."""

    def __init__(self, source: str, line: int | None, message: str):
        where = f"{source}:{line}" if line is not None else source
        super().__init__(f"{where}: {message}")
        self.source = source
        self.line = line
        self.reason = message


class ExtractError(ValueError):
    """Why a record's text could not be taken out of it."""


def _rebuild(cls, args, state):
    e = cls.__new__(cls)
    e.args = args
    e.__dict__.update(state)
    return e
