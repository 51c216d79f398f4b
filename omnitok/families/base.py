"""What every model family is built from: the `Family` protocol, the `Resolution` a family returns
for a model id, and the helpers the family modules share (id-table lookup, message texts, content
type, the step down to an estimate).

This module imports no family module; each family module (openai.py, claude.py, ...) imports it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .. import notices
from ..errors import AssetError, ExtractError, NotExactError, UsageError, shown

# Cross-region inference prefixes of Bedrock ids (`us.anthropic.claude-...`, `eu.meta.llama...`).
BEDROCK_REGIONS = ("us.", "eu.", "apac.", "global.", "us-gov.", "jp.", "au.")


# --- what a model id may hold -------------------------------------------------------------------

MAX_ID = 256  # Bedrock's own limit for a modelId; Hugging Face repo ids stop at 96
_NOT_IN_IDS = ("?", "#", "\\", "%")
_SEGMENTS = re.compile(r"[/:]")


def check_id(model: str) -> str:
    """`model` if it can be a model id, else a UsageError; applied by the registry's resolve to every
    id, wherever it comes from (a flag, a REST request, the environment), before any family sees it.

    A family turns an id into a provider's URL (Gemini, Bedrock: a path segment) or a directory
    name (the asset store, the Hugging Face cache), so an id holds printable text only (no
    control or format characters), at most MAX_ID characters, no '?', '#', '\\' or '%' (a
    query, a fragment, a Windows separator, an escape a server might decode twice), and no '.' or
    '..' segment between '/' or ':' (a way up out of a URL path or a store directory). The
    providers percent-encode the id into one path segment as well (remote.http.path_segment)."""
    if len(model) > MAX_ID:
        raise UsageError(f"model id {shown(model, 40)} is too long; at most {MAX_ID} characters are accepted")
    odd = next((c for c in model if not c.isprintable() and c != " "), None)
    if odd is not None:
        raise UsageError(f"model id {shown(model)} holds a control character (U+{ord(odd):04X})")
    bad = None
    if "/.." in model or any(s in (".", "..") for s in _SEGMENTS.split(model.strip())):
        # said in words: "'/..'" would read as a file path, which the server's messages hide
        bad = "a '..' after a slash" if "/.." in model else "a '.' or '..' segment"
    bad = bad or next((c for c in _NOT_IN_IDS if c in model), None)
    if bad is not None:
        what = bad if bad.startswith("a ") else repr(bad)
        raise UsageError(f"model id {shown(model)} holds {what}; model ids may not (they go into URLs and paths)")
    return model


@dataclass(frozen=True, slots=True)
class Resolution:
    """What a model id resolved to, and why.

    family: openai | claude | gemini | hf | a plugin's. `target` is what that family loads, in its
    own terms: an OpenAI encoding (o200k_base), a Claude calibration generation (claude-3), a
    Gemini model id (gemini-2.5-flash), a Hugging Face repo id (meta-llama/Llama-3.1-8B).
    chat_rule: how the family frames chats (openai-chat, claude, gemini, template, ...).
    """

    model: str
    family: str
    target: str
    chat_rule: str
    reason: str

    @property
    def encoding(self) -> str:
        """The former name of `target` (kept for callers written before the rename)."""
        return self.target


@dataclass(frozen=True)
class BundleFiles:
    """Tokenizer files a bundle carries for a model, by kind (omnitok.bundle.sources fetches each
    kind): `tiktoken` (name: an encoding, its rank file), `hf` (name: a Hugging Face repository,
    its tokenizer files, never weights), `gemma-spm` (name: a Gemma SentencePiece vocabulary)."""

    kind: str
    name: str


class Family:
    """A model family. Built-in families and plugins (the `omnitok.families` entry-point group)
    implement the same interface; the strategy chain asks the registry for a family by name and
    composes what it returns."""

    name = "family"
    order = 100  # lower resolves first; the Hugging Face org/name catch-all goes last
    chain = ""  # the strategy chain, for `omnitok models`

    def resolve(self, model: str) -> Resolution | None:
        """A Resolution if this family knows the id, else None."""
        raise NotImplementedError

    def offline(self, res: Resolution, opts):
        """The best local strategy (exact if possible)."""
        raise NotImplementedError

    def framing(self, res: Resolution, strategy, opts):
        """How the offline `strategy` frames texts and chats. None: the default framing (OpenAI's
        documented per-message rule, omnitok.families.default_framing)."""
        return None

    def provider(self, res: Resolution):
        """The online provider class for exact counts, or None."""
        return None

    def provider_model(self, res: Resolution) -> str:
        """The model name the provider's count API is sent."""
        return res.model

    def online(self, provider, res: Resolution, opts):
        """A connected instance of `provider` (the class `provider(res)` chose) under the options."""
        from ..remote.http import HttpPolicy

        return provider(self.provider_model(res), HttpPolicy(timeout=opts.timeout, retries=opts.retries))

    def cache_options(self, res: Resolution, special_tokens: bool) -> str:
        """The options that change this family's counts (part of every cache key)."""
        return ""

    def bundle_files(self, res: Resolution) -> tuple[BundleFiles, ...]:
        """What `omnitok bundle create` packs so that an offline host counts `res` as this one
        does; () when the family counts without files (a bundle then refuses the model)."""
        return ()

    def rows(self) -> list[dict]:
        """Known ids / patterns for `omnitok models`."""
        return []

    def names(self) -> list[str]:
        """Ids to suggest for a near-miss."""
        return [r["model"].rstrip("*") for r in self.rows()]


# --- id tables --------------------------------------------------------------------------------


def lookup(name: str, exact: dict[str, str], prefixes: dict[str, str]) -> tuple[str, str] | None:
    """(value, how it matched) for an id: an exact entry first, else the longest matching prefix
    (tiktoken's model.py rule), else None. Every id table of the registry is read this way."""
    if name in exact:
        return exact[name], f"exact id {name!r}"
    matches = [p for p in prefixes if name.startswith(p)]
    if matches:
        prefix = max(matches, key=len)
        return prefixes[prefix], f"prefix {prefix!r}"
    return None


def table_rows(exact: dict[str, str], prefixes: dict[str, str]) -> list[dict]:
    """An id table as `omnitok models` rows."""
    out = [{"model": m, "kind": "id", "target": t} for m, t in exact.items()]
    out += [{"model": p + "*", "kind": "prefix", "target": t} for p, t in prefixes.items()]
    return out


# --- chat framing helpers ---------------------------------------------------------------------


def check_role(msg: dict, where: str, i: int) -> None:
    """A message's role, where it has one, is a string (README, Input rules): in every family,
    whether or not its framing counts the role."""
    if "role" in msg and not isinstance(msg["role"], str):
        from ..records import type_name

        raise ExtractError(f"{where}[{i}].role is {type_name(msg['role'])}; a role is a string")


def message_texts(messages: list, where: str = "messages", unit: str = "part") -> list[str]:
    """The texts of a chat's messages: string contents and text parts/blocks (`{"text": ...}`,
    with `type` absent or "text"). Anything else (images, documents, audio) cannot be counted
    offline and is an error rather than a silent undercount."""
    texts: list[str] = []
    for i, msg in enumerate(messages):
        if not isinstance(msg, dict):
            raise ExtractError(f"{where}[{i}] is not an object")
        check_role(msg, where, i)
        content = msg.get("content", msg.get("parts"))
        if isinstance(content, str):
            texts.append(content)
        elif isinstance(content, list):
            for j, part in enumerate(content):
                if isinstance(part, dict) and isinstance(part.get("text"), str) and part.get("type", "text") == "text":
                    texts.append(part["text"])
                else:
                    kind = part.get("type") if isinstance(part, dict) else type(part).__name__
                    raise ExtractError(f"{where}[{i}].content[{j}]: a {kind!r} {unit} cannot be counted offline")
        elif content is not None:
            raise ExtractError(f"{where}[{i}].content is {type(content).__name__}; expected text or a list")
    return texts


def no_tools(tools: list | None, who: str, online: bool = True) -> None:
    """Tool definitions where no published rule says how they are counted: an error, never a
    silent undercount. `online`: the family has a count API that takes tools."""
    if tools:
        way = "count online (--online) or leave the 'tools' field out" if online else "leave the 'tools' field out"
        raise ExtractError(
            f"tools: {len(tools)} tool definition(s) cannot be counted offline for {who} (no published rule); {way}"
        )


# --- text statistics ---------------------------------------------------------------------


_CODE_CHARS = set("{}[]();=<>_/\\#*&|$")
_MATH_CHARS = set("0123456789+-*/=^()∑∫√≤≥≠±×÷πλ")


def content_type(text: str) -> str:
    """prose | code | math | nonlatin, from character statistics (cheap, no parsing). Claude's
    calibration ratios and the heuristic's figures both depend on it."""
    n = len(text)
    if n == 0:
        return "prose"
    sample = text if n <= 4000 else text[:2000] + text[-2000:]
    m = len(sample)
    # str.count per character class runs in C; the per-character loop is only for non-ASCII text.
    if not sample.isascii():
        non_ascii_letters = sum(1 for c in sample if ord(c) > 0x24F and c.isalpha())
        if non_ascii_letters / m > 0.3:
            return "nonlatin"
    code = sum(sample.count(c) for c in _CODE_CHARS)
    if code / m > 0.05 or "\n    " in sample and code / m > 0.02:
        return "code"
    math = sum(sample.count(c) for c in _MATH_CHARS)
    if math / m > 0.15:
        return "math"
    return "prose"


# --- stepping down from exact -----------------------------------------------------------------


def not_exact(res: Resolution, strategy, why: str) -> NotExactError:
    """The --strict error for a count that would be an estimate."""
    return NotExactError(
        f"{res.model}: {why}; the count would be an estimate (strategy {strategy.name}, "
        f"about ±{strategy.error_band:.0%}) and --strict asks for exact counts",
        hint="--online with the provider's credentials gives exact counts where the provider has a count API",
    )


def step_down(res: Resolution, opts, error: AssetError, strategy):
    """Step down to an estimate when an exact strategy's files are missing: an error under
    --strict (offline), else one warning, and `strategy` counts. Where counting online is allowed
    the estimate is the online count's fallback: the warning comes when it first counts, never
    after a count the provider made."""
    if opts.strict and not opts.online_allowed:
        raise not_exact(res, strategy, error.message)
    key = f"no-assets:{res.target}"
    message = (
        f"{error.message}; counting {res.model} with the heuristic (exact: false, about "
        f"±{strategy.error_band:.0%}). {error.hint or ''}".rstrip()
    )
    if opts.online_allowed:
        return _WarnOnUse(strategy, key, message)
    notices.warn_once(key, message)
    return strategy


class _WarnOnUse:
    """`strategy` as it is (every attribute read through), warning once (notices.warn_once) when
    it first counts."""

    def __init__(self, strategy, key: str, message: str):
        self._strategy, self._key, self._message = strategy, key, message

    def __getattr__(self, name):
        return getattr(self._strategy, name)

    def count(self, text):
        notices.warn_once(self._key, self._message)
        return self._strategy.count(text)

    def count_batch(self, texts):
        notices.warn_once(self._key, self._message)
        return self._strategy.count_batch(texts)
