"""The bundle manifest: one schema, checked before anything is written.

`parse` and `check` are the only way a manifest is read: by `create` (before it writes a
bundle), `inspect`, `verify`, `install` and by `installed` for the records in the store. The
schema is exact:

- `format` "omnitok-bundle", `format_version` 1 (an int, never a bool);
- `name`: a safe token, `[A-Za-z0-9._-]`, 1-128 characters, not starting with '.';
- `files`: a list of objects with `path` (relative, '/'-separated segments of `[A-Za-z0-9._-]`,
  none starting with '.', in one of the places a bundle fills (PLACES): `hf/<repo dir>/<file>`
  with <file> one of the tokenizer files (sources.HF_FILES), `tiktoken/<name>.tiktoken`,
  `gemini/<file>` (those omnitok pins must match the pin: reading.pinned_sha256),
  `calibrations/<id>.json`), `size` (an int, 0 to 1 TiB), `sha256` and optional `blake3` (64 lowercase
  hex), optional `source` (text), `revision` and `license` (text or null); no path listed twice,
  none inside another (a file where a directory must be);
- optional `omnitok_version` (text), `models` (model id -> list of listed paths) and
  `hf_revisions` (Hugging Face repo id -> revision);
- a repo id is `org/name` (or a legacy bare `name`), each part `[A-Za-z0-9._-]` starting and
  ending with a letter, digit or '_', no '--' or '..' (the hub's own rules), at most 96 characters;
- a revision is a 40-hex commit id or a ref name (`[A-Za-z0-9._-]`, no '/', no '..', not
  starting with '.', at most 128 characters);
- text fields hold no control or format characters (nothing that can rewrite a terminal line)
  and no lone surrogates, and are bounded in length.

Unknown fields, at the top level or in a file entry, are refused. The format version is the
compatibility contract: a writer that adds a field bumps it, and an older omnitok then says
which version it reads instead of installing something it did not check. Duplicate keys and
NaN/Infinity in the JSON are refused too (two parsers must not read two different manifests).

`inside` is the one way a path built from manifest data is turned into a filesystem path: it
refuses anything that does not stay under its root.
"""

from __future__ import annotations

import json
import re
import reprlib
import unicodedata
from pathlib import Path

from .sources import BundleError

FORMAT = "omnitok-bundle"
FORMAT_VERSION = 1
MAX_MANIFEST_BYTES = 64 << 20
MAX_FILES = 100_000
MAX_SIZE = 1 << 40
MAX_PATH = 1024
MAX_TEXT = 4096

# Where a bundle's files may go in the store: tokenizer files, pinned vocabularies, calibrations.
PLACES = ("hf", "tiktoken", "gemini", "calibrations")

_TOP = {
    "format": True,
    "format_version": True,
    "name": True,
    "files": True,
    "omnitok_version": False,
    "models": False,
    "hf_revisions": False,
}
_ENTRY = {
    "path": True,
    "size": True,
    "sha256": True,
    "blake3": False,
    "source": False,
    "revision": False,
    "license": False,
}

NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}")
SEGMENT = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,199}")
REPO_PART = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9_])?")
COMMIT = re.compile(r"[0-9a-f]{40}")
REF = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}")
HEX64 = re.compile(r"[0-9a-f]{64}")

_repr = reprlib.Repr()
_repr.maxstring = _repr.maxother = 80
_repr.maxlist = _repr.maxdict = 4
_repr.maxlevel = 2


def shown(value: object) -> str:
    """A short, one-line repr for messages (never the whole of a hostile value)."""
    return _repr.repr(value)


def _refuse(source: str, field: str, value: object, problem: str):
    raise BundleError(f"{source}: manifest entry {field} {shown(value)} {problem}")


def parse(data: bytes, source: str) -> dict:
    """The checked manifest from manifest.json's bytes."""
    if len(data) > MAX_MANIFEST_BYTES:
        raise BundleError(f"{source}: manifest.json is implausibly large ({len(data)} bytes)")

    def pairs(items):
        out = {}
        for key, value in items:
            if key in out:
                raise ValueError(f"key {shown(key)} appears twice")
            out[key] = value
        return out

    def constant(name):
        raise ValueError(f"{name} is not a JSON value")

    try:
        manifest = json.loads(data, object_pairs_hook=pairs, parse_constant=constant)
    except (ValueError, RecursionError) as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise BundleError(f"{source}: manifest.json is not valid JSON ({type(e).__name__}: {e})") from None
    return check(manifest, source)


def _text(source: str, field: str, value: object, limit: int = MAX_TEXT) -> str:
    if type(value) is not str:
        _refuse(source, field, value, f"must be text, not {type(value).__name__}")
    if len(value) > limit:
        _refuse(source, field, value, f"is longer than {limit} characters")
    for ch in value:
        if unicodedata.category(ch) in ("Cc", "Cf", "Cs"):
            _refuse(source, field, value, f"holds a control character ({ch!r})")
    return value


def _int(source: str, field: str, value: object, low: int, high: int) -> int:
    if type(value) is not int:
        _refuse(source, field, value, f"must be an integer, not {type(value).__name__}")
    if not low <= value <= high:
        _refuse(source, field, value, f"is outside {low}..{high}")
    return value


def _match(source: str, field: str, value: object, pattern: re.Pattern, what: str) -> str:
    if type(value) is not str or not pattern.fullmatch(value):
        _refuse(source, field, value, f"is not {what}")
    return value


def _keys(source: str, field: str, obj: dict, known: dict[str, bool]) -> None:
    for key in obj:
        if key not in known:
            _refuse(source, field + shown(key), obj[key], "is an unknown field (refused)")
    for key, required in known.items():
        if required and key not in obj:
            raise BundleError(f"{source}: manifest entry {field}{key} is missing")


def is_name(value: object) -> bool:
    return type(value) is str and bool(NAME.fullmatch(value))


def is_repo_id(value: object) -> bool:
    """org/name (or a bare legacy name) by the hub's rules; never a path."""
    if type(value) is not str:
        return False
    parts = value.split("/")
    return 1 <= len(parts) <= 2 and all(
        REPO_PART.fullmatch(p) and "--" not in p and ".." not in p and not p.endswith(".git") for p in parts
    )


def is_revision(value: object) -> bool:
    return type(value) is str and (bool(COMMIT.fullmatch(value)) or (bool(REF.fullmatch(value)) and ".." not in value))


def hf_repo(path: str) -> str | None:
    """The repo id of a checked `hf/<org>--<name>/...` path, else None."""
    if not path.startswith("hf/"):
        return None
    return path.split("/")[1].replace("--", "/", 1)


def unit(path: str) -> str:
    """What is replaced as a whole: a Hugging Face model's directory, or a single file."""
    parts = path.split("/")
    return "/".join(parts[:2]) if parts[0] == "hf" else path


def path_problem(path: object) -> str | None:
    """Why `path` cannot be a file's place in the store, or None when it can."""
    if type(path) is not str:
        return f"must be text, not {type(path).__name__}"
    if not path or len(path) > MAX_PATH:
        return f"must be 1 to {MAX_PATH} characters"
    parts = path.split("/")
    for p in parts:
        if not SEGMENT.fullmatch(p):
            return f"segment {shown(p)} is not [A-Za-z0-9._-] (1-200 characters, not starting with '.')"
    top = parts[0]
    if top == "bundles":
        return "bundles/ holds the store's records"
    if top not in PLACES:
        # derived/ (rank tables trusted by a hash they carry), onnx/, gguf/: omnitok's own making
        return f"{shown(top + '/')} is not a place a bundle fills ({', '.join(p + '/' for p in PLACES)})"
    if top == "hf":
        from .sources import HF_FILES

        if len(parts) != 3:
            return "a Hugging Face file is hf/<org>--<name>/<file>"
        if not is_repo_id(hf_repo(path)):
            return f"{shown(parts[1])} is not a Hugging Face repo directory (<org>--<name>)"
        if parts[2] not in HF_FILES:
            return f"{shown(parts[2])} is not a tokenizer file ({', '.join(HF_FILES)}): never weights or code"
    elif top == "calibrations":
        if len(parts) != 2 or not parts[1].endswith(".json"):
            return "a calibration is calibrations/<id>.json"
    elif top == "tiktoken":
        if len(parts) != 2 or not parts[1].endswith(".tiktoken"):
            return "a rank file is tiktoken/<name>.tiktoken"
    elif len(parts) != 2:
        return "a Gemma vocabulary is gemini/<file>"
    return None


def check(manifest: object, source: str) -> dict:
    """`manifest` itself when it follows the schema above, else a BundleError naming the field."""
    if type(manifest) is not dict or manifest.get("format") != FORMAT or type(manifest.get("format")) is not str:
        raise BundleError(f"{source}: manifest.json is not an omnitok bundle manifest")
    version = manifest.get("format_version")
    if type(version) is not int or version != FORMAT_VERSION:
        raise BundleError(
            f"{source}: manifest format version {shown(version)} is not one this omnitok "
            f"reads ({FORMAT_VERSION}); use a matching omnitok version"
        )
    _keys(source, "", manifest, _TOP)
    name = manifest["name"]
    if not is_name(name):
        _refuse(source, "name", name, "is not a safe name ([A-Za-z0-9._-], 1-128 characters, not starting with '.')")
    if "omnitok_version" in manifest:
        _text(source, "omnitok_version", manifest["omnitok_version"], 64)

    files = manifest["files"]
    if type(files) is not list:
        _refuse(source, "files", files, f"must be a list, not {type(files).__name__}")
    if len(files) > MAX_FILES:
        raise BundleError(f"{source}: manifest entry files lists more than {MAX_FILES} files")
    paths: set[str] = set()
    for i, entry in enumerate(files):
        field = f"files[{i}]"
        if type(entry) is not dict:
            _refuse(source, field, entry, f"must be an object, not {type(entry).__name__}")
        path = entry.get("path")
        if (problem := path_problem(path)) is not None:
            raise BundleError(f"{source}: manifest entry {field}.path {shown(path)} has an unsafe path: {problem}")
        _keys(source, field + ".", entry, _ENTRY)
        if path in paths:
            _refuse(source, f"{field}.path", path, "is listed twice")
        paths.add(path)
        _int(source, f"{field}.size", entry["size"], 0, MAX_SIZE)
        _match(source, f"{field}.sha256", entry["sha256"], HEX64, "64 lowercase hex digits")
        if "blake3" in entry:
            _match(source, f"{field}.blake3", entry["blake3"], HEX64, "64 lowercase hex digits")
        if "source" in entry:
            _text(source, f"{field}.source", entry["source"])
        if entry.get("revision") is not None and not is_revision(entry["revision"]):
            _refuse(source, f"{field}.revision", entry["revision"], "is not a commit id or a plain ref name")
        if entry.get("license") is not None:
            _text(source, f"{field}.license", entry["license"])
    for path in paths:  # a file where another entry needs a directory
        parts = path.split("/")
        for n in range(1, len(parts)):
            if "/".join(parts[:n]) in paths:
                _refuse(source, "files", path, f"lies inside the listed file {shown('/'.join(parts[:n]))}")

    models = manifest.get("models", {})
    if type(models) is not dict:
        _refuse(source, "models", models, f"must be an object, not {type(models).__name__}")
    for model, listed in models.items():
        _text(source, "models key", model, 256)
        if not model:
            _refuse(source, "models key", model, "is empty")
        if type(listed) is not list:
            _refuse(source, f"models[{shown(model)}]", listed, f"must be a list, not {type(listed).__name__}")
        for p in listed:
            if type(p) is not str or p not in paths:
                _refuse(source, f"models[{shown(model)}]", p, "is not a path listed in files")

    revisions = manifest.get("hf_revisions", {})
    if type(revisions) is not dict:
        _refuse(source, "hf_revisions", revisions, f"must be an object, not {type(revisions).__name__}")
    for repo, rev in revisions.items():
        if not is_repo_id(repo):
            _refuse(source, "hf_revisions key", repo, "is not a Hugging Face repo id (org/name)")
        if not is_revision(rev):
            _refuse(
                source,
                f"hf_revisions[{shown(repo)}]",
                rev,
                "is not a commit id (40 hex digits) or a plain ref name (no '/', '..' or leading '.')",
            )
    return manifest


def inside(root: Path, rel: str, what: str = "store") -> Path:
    """root/rel, proven to stay under root (symbolic links on the way included), else refused."""
    from ..assets.transactions import under

    try:
        return under(root, rel)
    except ValueError:
        raise BundleError(f"{rel!r} would be written outside the {what} ({root})") from None
