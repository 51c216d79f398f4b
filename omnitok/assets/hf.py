"""Finding a Hugging Face model's tokenizer files offline.

Search order: an explicit --tokenizer path (a directory, a file in one, or a GGUF model file whose
vocabulary is converted once and cached); the config's local_model_dirs; omnitok's asset store
($OMNITOK_HOME/assets/hf/<org>--<name>/, where bundles install); the Hugging Face cache
(HF_HUB_CACHE, else HF_HOME/hub, else ~/.cache/huggingface/hub), read offline.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..config import settings
from ..errors import AssetError, shown
from .store import asset_store

TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "tokenizer_config.json")


def hf_cache_dir() -> Path:
    if env := os.environ.get("HF_HUB_CACHE"):
        return Path(env)
    home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "huggingface"
    )
    return Path(home) / "hub"


def has_tokenizer(path: Path) -> bool:
    return path.is_dir() and any((path / name).is_file() for name in TOKENIZER_FILES[:3])


def is_gguf(path: Path) -> bool:
    return path.suffix.lower() == ".gguf" and path.is_file()


def _from_hf_cache(model_id: str) -> Path | None:
    repo = hf_cache_dir() / ("models--" + model_id.replace("/", "--"))
    snapshots = repo / "snapshots"
    if not snapshots.is_dir():
        return None
    ref = repo / "refs" / "main"
    if ref.is_file():
        snap = snapshots / ref.read_text().strip()
        if has_tokenizer(snap):
            return snap
    candidates = sorted((p for p in snapshots.iterdir() if has_tokenizer(p)), key=lambda p: p.stat().st_mtime)
    return candidates[-1] if candidates else None


def candidates(model_id: str) -> list[tuple[Path, str]]:
    out = []
    if model_id in settings().local_model_dirs:
        out.append((Path(settings().local_model_dirs[model_id]).expanduser(), "local_model_dirs"))
    out.append((asset_store() / "hf" / model_id.replace("/", "--"), "omnitok asset store"))
    return out


def find_hf_tokenizer(model_id: str, explicit: str | None = None) -> tuple[Path, str]:
    """(directory, where) holding the model's tokenizer files, or a llama.cpp .gguf model file
    (which tokenizers.hf.locate converts; assets only finds files), or raise AssetError."""
    if explicit:
        path = Path(explicit).expanduser()
        try:
            if is_gguf(path):
                return path, f"--tokenizer (GGUF {path})"
            if path.is_file():
                path = path.parent
            found = has_tokenizer(path)
        except OSError as e:  # a name past the file-name limits (ENAMETOOLONG), a loop of links
            raise AssetError(f"--tokenizer {shown(explicit, quote=False)}: {e.strerror or e}") from None
        if not found:
            raise AssetError(
                f"--tokenizer {shown(explicit, quote=False)}: no tokenizer.json, tokenizer.model or vocab.json there, "
                "and not a .gguf file"
            )
        return path, "--tokenizer"
    looked = []
    for path, where in candidates(model_id):
        if is_gguf(path):
            return path, f"{where} (GGUF {path})"
        if has_tokenizer(path):
            return path, where
        looked.append(str(path))
    snap = _from_hf_cache(model_id)
    if snap is not None:
        return snap, "Hugging Face cache"
    looked.append(str(hf_cache_dir() / ("models--" + model_id.replace("/", "--"))))
    raise AssetError(
        f"no tokenizer files for {model_id!r} on this machine (looked in: {', '.join(looked)})",
        hint="give --tokenizer DIR, add it to local_model_dirs in the config, install an omnitok bundle, "
        f"or on a connected machine run `hf download {model_id} tokenizer.json tokenizer_config.json`",
    )
