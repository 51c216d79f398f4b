"""Encode, decode and truncate with a model's exact local tokenizer: what tiktoken's
`encode_ordinary` and `decode`, and ttok's `--encode`, `--decode` and `-t N`, give, for every model
omnitok counts exactly offline.

    >>> omnitok.encode("hello world", model="gpt-4o")
    [24912, 2375]
    >>> omnitok.decode([24912, 2375], model="gpt-4o")
    'hello world'
    >>> omnitok.truncate("hello world", 1, model="gpt-4o")
    'hello'

Text is encoded as `count` counts it: a special-token string (`<|endoftext|>`) in text is plain
text, and no BOS or EOS is added (a Hugging Face tokenizer's added tokens written in the text are
its tokens, as transformers reads them). So `len(encode(text))` is count's number for the text,
less the special tokens a Hugging Face tokenizer adds (count's `--no-special-tokens`). Lone
surrogates in a str become U+FFFD first, as tiktoken makes them.

Only an exact local tokenizer encodes: OpenAI's encodings, a Hugging Face model's files (GGUF and
SentencePiece included); an estimate (Claude offline, the heuristic) cannot, and says so.
"""

from __future__ import annotations

import dataclasses
import operator
import re
from collections.abc import Iterable

from .errors import AssetError, NotExactError, UsageError, shown
from .numbers import checked


class Encoder:
    """A model's exact local tokenizer, for encode / decode / truncate (the counting strategy's own)."""

    def __init__(
        self,
        model: str | None = None,
        *,
        encoding: str | None = None,
        engine: str = "auto",
        tokenizer: str | None = None,
        purpose: str = "encode",
    ):
        from .counter import resolve
        from .strategy_chain import Options

        self.resolution = resolve(model, encoding)
        opts = Options(engine=engine, tokenizer=tokenizer, online=False, strict=True)
        self.strategy = _exact_local(self.resolution, opts, purpose)
        self.name = self.strategy.encoding.removeprefix("hf:")  # the vocabulary, for messages

    def encode(self, text: str) -> list[int]:
        """The text's token ids, as count counts them (special-token strings as plain text)."""
        return list(self.strategy.encode(_text(text)))

    def decode(self, ids: Iterable[int]) -> str:
        """The text of token ids (a character cut by the last id shows as U+FFFD, as tiktoken's
        decode shows it). An id not in the vocabulary is a UsageError naming it."""
        return self.strategy.decode(self.checked_ids(ids))

    def tokenize(self, text: str) -> list[tuple[int, str | bytes]]:
        """(id, token) for each token of the text: its text, or its bytes where they are not
        whole UTF-8 characters (byte-level BPE splits an emoji into such tokens)."""
        piece = self.strategy.token_bytes
        return [(i, _shown(piece(i))) for i in self.encode(text)]

    def truncate(self, text: str, max_tokens: int) -> str:
        """The longest prefix of the text that is whole tokens of it and counts at most max_tokens:
        the text of its first tokens (as ttok's -t N), never a cut character (a token that ends
        inside one is left out with it), and rechecked: count(result) <= max_tokens."""
        if max_tokens is None:  # (checked lets None through: an option not given)
            raise UsageError("max_tokens must be a whole number >= 0, not None")
        checked("max_tokens", max_tokens, 0, integer=True)
        text = _text(text)
        found = self.strategy.encode_cuts(text)
        if found is None:
            return self._truncate_by_prefixes(text, max_tokens)
        ids, cuts = found
        count = self.strategy.count
        for k in range(min(max_tokens, len(ids)), 0, -1):
            cut = len(text) if k == len(ids) else cuts[k - 1]
            if cut is not None and count(text[:cut]) <= max_tokens:
                return text[:cut]
        return ""

    def _truncate_by_prefixes(self, text: str, max_tokens: int) -> str:
        """For a tokenizer that gives no offsets (SentencePiece): the longest character prefix that
        counts at most max_tokens (bisection), then back to the end of one of the text's own tokens
        (the prefix encodes as the text's first tokens)."""
        encode = self.strategy.encode
        ids = list(encode(text))
        if len(ids) <= max_tokens:
            return text
        lo, hi = 0, len(text)
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if len(encode(text[:mid])) <= max_tokens:
                lo = mid
            else:
                hi = mid
        for cut in range(lo, 0, -1):
            got = list(encode(text[:cut]))
            if len(got) <= max_tokens and got == ids[: len(got)]:
                return text[:cut]
        return ""

    def checked_ids(self, ids: Iterable[int]) -> list[int]:
        """The ids as a list, each one the vocabulary has; else a UsageError naming the first that is not.
        A bool is no id, as parse_ids rules for the command line's JSON (`[true]`); a string is
        no list of ids (parse_ids reads the command line's forms)."""
        if isinstance(ids, (str, bytes, bytearray)):
            raise UsageError(
                f"token ids are a list of whole numbers, not a {type(ids).__name__} "
                "(omnitok.api.parse_ids reads '24912 2375' or '[24912, 2375]')"
            )
        out = []
        for value in ids:
            try:
                if isinstance(value, bool):
                    raise TypeError
                i = operator.index(value)
            except TypeError:
                raise UsageError(f"token ids are whole numbers, not {value!r}") from None
            out.append(i)
        size = self.strategy.vocab_size
        piece = self.strategy.token_bytes
        for i in dict.fromkeys(out):
            if not 0 <= i < size:
                raise UsageError(f"token id {i} is not in {self.name}'s vocabulary (ids 0 to {size - 1})")
            try:
                piece(i)
            except (KeyError, OverflowError):
                raise UsageError(f"token id {i} is not in {self.name}'s vocabulary (no token has that id)") from None
        return out


def _exact_local(res, opts, purpose: str):
    """The model's offline strategy, if it is exact and can encode; else a UsageError saying why."""
    from .strategy_chain import offline

    directory = None
    if res.family == "hf":  # no files is the usual cause: say where omnitok looked, and how to get them
        from .tokenizers.hf import locate

        try:
            directory, _ = locate(res.target, opts.tokenizer)
        except AssetError as e:
            raise UsageError(
                f"{res.model} has no local tokenizer ({e.message}); {purpose} needs an exact local one", hint=e.hint
            ) from None
    if purpose == "decode" and opts.engine == "auto":
        opts = dataclasses.replace(opts, engine=_decode_engine(res, directory))
    try:
        strategy = offline(res, opts)
    except NotExactError:  # only an estimate is available offline
        strategy = None
    if strategy is None or not strategy.exact:
        how = f" (offline its counts are estimates: strategy {strategy.name})" if strategy is not None else ""
        raise UsageError(
            f"{res.model} has no local tokenizer; {purpose} needs an exact local one",
            hint=f"`omnitok count` still counts it{how}; encode, decode and truncate work with OpenAI "
            "models, Hugging Face models whose tokenizer files are here, and GGUF files",
        )
    if not getattr(strategy, "encodes", False):
        raise UsageError(
            f"{res.model}: its tokenizer ({strategy.name}, engine {strategy.engine}) counts but cannot {purpose}"
        )
    return strategy


def _decode_engine(res, directory) -> str:
    """What an `auto` decode reads: a fast engine decodes through its reference's vocabulary
    (ReferenceGuarded.decode), so decode builds none. pybpe's table for an OpenAI encoding (the
    same bytes as tiktoken's), `tokenizers` for a tokenizer.json (gigatoken's reference); else
    auto (sentencepiece, transformers: nothing extra to skip)."""
    from .families import rank_files_only

    if rank_files_only(res):
        return "pybpe"
    if directory is not None and (directory / "tokenizer.json").is_file():
        return "tokenizers"
    return "auto"


def _text(text: str) -> str:
    if not isinstance(text, str):
        raise TypeError(f"expected a string, got {type(text).__name__}")
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:  # lone surrogates: as tiktoken cleans them
            text = text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return text


def _shown(data: bytes) -> str | bytes:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data


_ID_SEPARATORS = re.compile(r"[\s,]+")


TOO_LONG_ID = "token ids: an id of more than 4,300 digits (no vocabulary has one)"


def parse_ids(text: str) -> list[int]:
    """Token ids written as a JSON array (`[1, 2]`) or separated by whitespace and/or commas."""
    text = text.strip()
    if text.startswith("["):
        import json
        import reprlib

        try:
            values = json.loads(text)
        except ValueError as e:
            if "integer string conversion" in str(e):  # an id of more than 4,300 digits
                raise UsageError(TOO_LONG_ID) from None
            raise UsageError(f"token ids: not a JSON array: {e}") from None
        except RecursionError:  # arrays nested past the interpreter's depth: not ids either
            raise UsageError("token ids: not a JSON array of numbers: nested too deep") from None
        if not isinstance(values, list):
            raise UsageError("token ids: not a JSON array")
        for v in values:
            if not isinstance(v, int) or isinstance(v, bool):
                raise UsageError(f"token ids are whole numbers, not {reprlib.repr(v)}")
        return values
    out = []
    for word in _ID_SEPARATORS.split(text):
        if not word:
            continue
        if not re.fullmatch(r"[+-]?[0-9]+", word):
            raise UsageError(f"token ids are whole numbers, not {shown(word)}")
        try:
            out.append(int(word))
        except ValueError:  # past Python's 4,300 digits
            raise UsageError(TOO_LONG_ID) from None
    return out


def encode(text: str, model: str | None = None, **options) -> list[int]:
    """The token ids of a text, as count counts it; options: encoding, engine, tokenizer.

    >>> omnitok.encode("hello world", model="gpt-4o")
    [24912, 2375]
    """
    return Encoder(model, purpose="encode", **options).encode(text)


def decode(ids: Iterable[int], model: str | None = None, **options) -> str:
    """The text of token ids; an id not in the vocabulary is a UsageError naming it."""
    return Encoder(model, purpose="decode", **options).decode(ids)


def truncate(text: str, max_tokens: int, model: str | None = None, **options) -> str:
    """The longest prefix of the text, in whole tokens and whole characters, of at most max_tokens."""
    return Encoder(model, purpose="truncate", **options).truncate(text, max_tokens)


def tokenize(text: str, model: str | None = None, **options) -> list[tuple[int, str | bytes]]:
    """(id, token text) pairs for showing a text's tokens; bytes for a token that is not whole
    UTF-8 characters.

    >>> omnitok.tokenize("hi 😀", model="gpt-4o")
    [(3686, 'hi'), (88038, ' 😀')]
    >>> omnitok.tokenize("😀", model="gpt-4")
    [(76460, b'\\xf0\\x9f\\x98'), (222, b'\\x80')]
    """
    return Encoder(model, purpose="encode", **options).tokenize(text)
