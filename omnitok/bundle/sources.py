"""Where a bundle's files come from: the registry says which assets a model needs; they are taken
from this machine when present and verified, else fetched (the hub through huggingface_hub, which
honours HF_ENDPOINT and HF_TOKEN; OpenAI's and Google's public URLs, checked against their
pinned sha256). Never model weights."""

from __future__ import annotations

import hashlib
import shutil
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from ..errors import OmnitokError

# Tokenizer files a hub repository may hold; nothing else (weights) is ever fetched.
HF_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "tokenizer.model",
    "spiece.model",
    "sentencepiece.bpe.model",
    "vocab.json",
    "vocab.txt",
    "merges.txt",
    "chat_template.jinja",
    "chat_template.json",
    "config.json",
)


class BundleError(OmnitokError):
    """A bundle that cannot be created, read or installed; says which entry and why."""


@dataclass
class Asset:
    path: str  # inside the bundle and the store: tiktoken/..., hf/<org>--<name>/..., gemini/...
    local: Path  # a file holding the bytes
    source: str
    revision: str | None = None
    license: str | None = None


def _download(url: str, dest: Path, sha256: str) -> Path:
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        with urllib.request.urlopen(url, timeout=60) as resp, open(dest, "wb") as out:
            shutil.copyfileobj(resp, out)
    except OSError as e:
        raise BundleError(f"cannot download {url}: {e}") from None
    actual = hashlib.sha256(dest.read_bytes()).hexdigest()
    if actual != sha256:
        dest.unlink()
        raise BundleError(f"{url}: sha256 {actual} does not match the pinned {sha256}")
    return dest


def openai_assets(encoding: str, work: Path) -> list[Asset]:
    from ..assets.store import find_tiktoken_file
    from ..errors import AssetError
    from ..tokenizers.openai_encodings import ENCODINGS

    spec = ENCODINGS[encoding]
    try:
        path, where = find_tiktoken_file(spec.file, spec.url, spec.sha256)
        source = spec.url if where != "embedded" else f"{spec.url} (embedded copy)"
    except AssetError:
        path, source = _download(spec.url, work / "dl" / f"{spec.file}.tiktoken", spec.sha256), spec.url
    return [Asset(f"tiktoken/{spec.file}.tiktoken", path, source, None, "MIT (tiktoken, OpenAI)")]


def gemma_assets(name: str, work: Path) -> list[Asset]:
    from ..errors import AssetError
    from ..families import gemini

    vocab = gemini.SENTENCEPIECE[name]
    try:
        path, _ = gemini.find_spm(name)
    except AssetError:
        path = _download(vocab.url, work / "dl" / vocab.filename, vocab.sha256)
    return [Asset(f"gemini/{vocab.filename}", path, vocab.url, None, "Apache-2.0 (Google, gemma_pytorch)")]


def hf_assets(repo: str, work: Path, revision: str | None = None, local_dir: str | None = None) -> list[Asset]:
    prefix = "hf/" + repo.replace("/", "--")
    if local_dir:
        d = Path(local_dir).expanduser()
        files = [d / n for n in HF_FILES if (d / n).is_file()]
        if not any(f.name in ("tokenizer.json", "tokenizer.model", "vocab.json") for f in files):
            raise BundleError(f"{local_dir}: no tokenizer files for {repo}")
        return [Asset(f"{prefix}/{f.name}", f, f"local:{d}", None, None) for f in files]
    try:
        from huggingface_hub import HfApi, hf_hub_download
        from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, RepositoryNotFoundError
    except ImportError:
        raise BundleError(
            "fetching from the Hugging Face hub needs huggingface_hub (pip install 'omnitok[hf]')"
        ) from None
    try:
        info = HfApi().model_info(repo, revision=revision)
        names = sorted({s.rfilename for s in info.siblings or []} & set(HF_FILES))
        if not names:
            raise BundleError(f"{repo}@{info.sha}: the repository has no tokenizer files")
        license_ = None
        card = getattr(info, "card_data", None)
        if card is not None:
            license_ = getattr(card, "license", None) or (card.get("license") if hasattr(card, "get") else None)
        if isinstance(license_, (list, tuple)):  # a model card may list several
            license_ = ", ".join(map(str, license_))
        elif license_ is not None:
            license_ = str(license_)
        cache = work / "hub"
        out = []
        for name in names:
            local = hf_hub_download(repo, name, revision=info.sha, cache_dir=str(cache))
            out.append(Asset(f"{prefix}/{name}", Path(local), f"hf://{repo}/{name}", info.sha, license_))
        return out
    except GatedRepoError:
        raise BundleError(
            f"{repo} is gated on the Hugging Face hub: accept its licence on the model page and set HF_TOKEN "
            "to a token that has access"
        ) from None
    except RepositoryNotFoundError:
        raise BundleError(f"{repo}: no such repository on the hub (or it is private: set HF_TOKEN)") from None
    except HfHubHTTPError as e:
        raise BundleError(f"{repo}: the hub answered {e}") from None
    except _network_errors() as e:  # connection refused, DNS, timeouts, offline mode
        raise BundleError(
            f"{repo}: cannot reach the Hugging Face hub ({type(e).__name__}); run this where the hub is "
            f"reachable, or take the model's tokenizer files from a directory: --local {repo}=DIR"
        ) from None


def _network_errors() -> tuple[type[BaseException], ...]:
    """What the hub's client raises when the hub cannot be reached: OSError, and the transport
    errors of the HTTP library it is built on (httpx2 or httpx in huggingface_hub 1.x and later,
    requests before), which are not OSErrors."""
    import importlib

    kinds: list[type[BaseException]] = [OSError]
    for module, names in (
        ("httpx2", ("TransportError",)),
        ("httpx", ("TransportError",)),
        ("requests", ("ConnectionError", "Timeout")),
        ("huggingface_hub.errors", ("OfflineModeIsEnabled",)),
    ):
        try:
            mod = importlib.import_module(module)
        except ImportError:
            continue
        kinds += [k for k in (getattr(mod, name, None) for name in names) if isinstance(k, type)]
    return tuple(kinds)


def gather(recipe, work: Path) -> tuple[list[Asset], dict[str, list[str]], dict[str, str]]:
    """(assets, model -> bundle paths, hf repo -> revision) for every model of a recipe."""
    from ..errors import AssetError
    from ..families import family, resolve

    assets: dict[str, Asset] = {}
    by_model: dict[str, list[str]] = {}
    revisions: dict[str, str] = {}
    for model in recipe.models:
        res = resolve(model)
        try:
            needs = family(res.family).bundle_files(res)  # the family says what it counts with
        except AssetError as e:
            raise BundleError(e.message) from None
        if not needs:
            raise BundleError(f"{model}: the {res.family} family has no files to bundle")
        found = [a for need in needs for a in _fetch(need, model, recipe, work)]
        for a in found:
            assets.setdefault(a.path, a)
            if a.revision and a.path.startswith("hf/"):
                revisions[a.path.split("/")[1].replace("--", "/", 1)] = a.revision
        by_model[model] = [a.path for a in found]
    return [assets[p] for p in sorted(assets)], by_model, revisions


def _fetch(need, model: str, recipe, work: Path) -> list[Asset]:
    """The assets of one BundleFiles (families.base) of `model`: a recipe's --local directory and
    --revision pin apply to a Hugging Face repository (named by the repository or by the model)."""
    if need.kind == "tiktoken":
        return openai_assets(need.name, work)
    if need.kind == "gemma-spm":
        return gemma_assets(need.name, work)
    if need.kind == "hf":
        repo = need.name
        local = recipe.local_dirs.get(repo) or recipe.local_dirs.get(model)
        return hf_assets(repo, work, recipe.revisions.get(repo), local)
    raise BundleError(f"{model}: its family asks for {need.kind!r} files, which a bundle cannot carry")
