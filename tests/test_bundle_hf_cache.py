"""`bundle install --hf-cache` next to a model the user already has in the Hugging Face cache:
found by an adversarial pass, a --local bundle (no revision) moved refs/main to an invented
all-zero revision and marked config.json as missing for it, so transformers offline no longer
found the user's whole model (config, weights) by name."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from huggingface_hub import try_to_load_from_cache

from omnitok.bundle import install

from .test_bundle_security import legit, pack, world_env

REPO_DIR = "models--good--model"


def _users_model(hub: Path, rev: str) -> Path:
    """A model downloaded whole at `rev`, as huggingface_hub lays it out."""
    snap = hub / REPO_DIR / "snapshots" / rev
    snap.mkdir(parents=True)
    for name, data in {
        "config.json": b'{"model_type": "llama"}',
        "model.safetensors": b"weights",
        "tokenizer.json": b'{"model": {"old": 1}}',
    }.items():
        blob = hub / REPO_DIR / "blobs" / hashlib.sha256(data).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        (snap / name).symlink_to(os.path.relpath(blob, snap))
    (hub / REPO_DIR / "refs").mkdir()
    (hub / REPO_DIR / "refs" / "main").write_text(rev)
    return snap


def test_a_model_cached_at_another_revision_stays_what_the_cache_serves(tmp_path, warnings_seen):
    with world_env(tmp_path):
        hub = tmp_path / "hf" / "hub"
        snap = _users_model(hub, "a" * 40)
        manifest, members = legit("local", {"hf/good--model/tokenizer.json": b'{"model": {"new": 1}}'}, {})
        install(pack(tmp_path / "b.tar.gz", manifest, members), hf_cache=True)
        assert (hub / REPO_DIR / "refs" / "main").read_text() == "a" * 40
        for name in ("config.json", "model.safetensors", "tokenizer.json"):
            assert try_to_load_from_cache("good/model", name, cache_dir=hub) == str(snap / name)
    assert warnings_seen == [
        f"Hugging Face cache: good/model is at revision {'a' * 12} there; its refs/main is left as it is "
        f"(this bundle's files are in snapshots/{'0' * 12})"
    ]


def test_a_bundle_at_the_cached_revision_marks_no_file_that_snapshot_holds(tmp_path):
    with world_env(tmp_path):
        hub = tmp_path / "hf" / "hub"
        snap = _users_model(hub, "b" * 40)
        manifest, members = legit("same", {"hf/good--model/tokenizer.json": b'{"model": {"new": 1}}'})
        install(pack(tmp_path / "b.tar.gz", manifest, members), hf_cache=True)
        assert try_to_load_from_cache("good/model", "config.json", cache_dir=hub) == str(snap / "config.json")
        assert try_to_load_from_cache("good/model", "model.safetensors", cache_dir=hub) == str(
            snap / "model.safetensors"
        )
        assert not (hub / REPO_DIR / ".no_exist" / ("b" * 40) / "config.json").exists()
        assert (hub / REPO_DIR / ".no_exist" / ("b" * 40) / "vocab.json").exists()  # a file neither has
        assert (snap / "tokenizer.json").read_bytes() == b'{"model": {"new": 1}}'  # the bundle's, its revision
