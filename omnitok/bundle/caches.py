"""The standard caches an install can also fill (`--hf-cache`, `--tiktoken-cache`): their layouts
planned as actions on checked paths, then written after the store's commit, each file under a
temporary name and renamed."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import uuid
from pathlib import Path

from .manifest import hf_repo
from .plan import check_free, must_be_dir, sha256_or_none


def plan_hf_cache(manifest: dict, root: Path) -> tuple[Path, list[tuple]]:
    """The Hugging Face cache layout (blobs + snapshots/<rev> + refs/main), so that transformers
    with HF_HUB_OFFLINE=1 finds the files unchanged; as actions on checked paths."""
    from ..assets.hf import hf_cache_dir
    from .sources import HF_FILES

    cache = hf_cache_dir()
    what = "Hugging Face cache"
    must_be_dir(cache, what)
    by_repo: dict[str, list[dict]] = {}
    for e in manifest["files"]:
        if (repo := hf_repo(e["path"])) is not None:
            by_repo.setdefault(repo, []).append(e)
    actions: list[tuple] = []
    created: dict[str, bool] = {}

    def dest(rel: str) -> Path:
        check_free(cache, rel, False, what, created)
        return cache / rel

    for repo, entries in sorted(by_repo.items()):
        rev = manifest.get("hf_revisions", {}).get(repo) or "0" * 40
        base = "models--" + repo.replace("/", "--")
        present = set()
        for e in entries:
            rest = e["path"].split("/", 2)[2]
            present.add(rest)
            blob = dest(f"{base}/blobs/{e['sha256']}")
            link = dest(f"{base}/snapshots/{rev}/{rest}")
            actions.append(("copy", blob, root / e["path"], e["sha256"]))
            actions.append(("link", link, os.path.relpath(blob, link.parent), None))
        # As huggingface_hub records a 404: these files do not exist, so offline lookups stop here;
        # never for a file that revision's snapshot already holds (a model the user downloaded
        # whole, config.json and weights included, at the bundle's own revision).
        for name in HF_FILES:
            marker = dest(f"{base}/.no_exist/{rev}/{name}")
            if name in present:
                actions.append(("unlink", marker, "", None))
            elif not os.path.lexists(cache / base / "snapshots" / rev / name):
                actions.append(("touch", marker, "", None))
        current = _ref(cache / base / "refs" / "main")
        if current is not None and current != rev and (cache / base / "snapshots" / current).is_dir():
            # The cache already serves this model at another revision (often the whole model, weights
            # and all): moving refs/main would hide it from transformers offline. Left as it is;
            # omnitok reads the bundle's files from its own store.
            from .. import notices

            notices.warn_once(
                f"hf-cache-ref:{repo}",
                f"Hugging Face cache: {repo} is at revision {current[:12]} there; its refs/main is left "
                f"as it is (this bundle's files are in snapshots/{rev[:12]})",
            )
        else:
            actions.append(("write", dest(f"{base}/refs/main"), rev, None))
    return cache, actions


def _ref(path: Path) -> str | None:
    """The revision a refs/ file names, if it is a plain file holding one."""
    from .manifest import is_revision

    try:
        if not os.path.isfile(path) or os.path.islink(path):
            return None
        with open(path, "rb") as f:
            value = f.read(256).decode("ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return value if is_revision(value) else None


def plan_tiktoken_cache(manifest: dict, root: Path) -> tuple[Path, list[tuple]]:
    """tiktoken's cache layout (files named by the sha1 of their URL) for TIKTOKEN_CACHE_DIR."""
    from ..assets.store import _tiktoken_cache_dirs
    from ..tokenizers.openai_encodings import ENCODINGS

    target = _tiktoken_cache_dirs()[0]
    must_be_dir(target, "tiktoken cache")
    by_file = {f"tiktoken/{s.file}.tiktoken": s.url for s in ENCODINGS.values()}
    actions: list[tuple] = []
    created: dict[str, bool] = {}
    for e in manifest["files"]:
        if url := by_file.get(e["path"]):
            name = hashlib.sha1(url.encode()).hexdigest()
            check_free(target, name, False, "tiktoken cache", created)
            actions.append(("copy", target / name, root / e["path"], None))
    return target, actions


def apply_cache(actions: list[tuple]) -> None:
    """Each file written under a temporary name and renamed into place."""
    for kind, dest, arg, sha in actions:
        if kind == "unlink":
            with contextlib.suppress(FileNotFoundError):
                os.unlink(dest)
            continue
        if kind == "touch" and os.path.lexists(dest):
            continue
        if kind == "copy" and sha is not None and os.path.isfile(dest) and sha256_or_none(dest) == sha:
            continue
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.tmp-{uuid.uuid4().hex[:12]}")
        try:
            if kind == "copy":
                shutil.copyfile(arg, tmp)
            elif kind == "link":
                os.symlink(arg, tmp)
            else:  # write, touch
                tmp.write_text(arg)
            os.replace(tmp, dest)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
