"""deploy/kubernetes.yaml wires every provider key omnitok reads from the Secret omnitok-providers,
each optional (a key the Secret lacks leaves that provider offline; the pods start regardless),
and writes none of them out."""

from __future__ import annotations

from pathlib import Path

import pytest

from omnitok.serve.errors import SECRET_ENV

yaml = pytest.importorskip("yaml", reason="PyYAML reads the manifest (installed with the test extra)")

MANIFEST = Path(__file__).resolve().parent.parent / "deploy" / "kubernetes.yaml"


def _api_container() -> dict:
    docs = [d for d in yaml.safe_load_all(MANIFEST.read_text()) if d]
    (api,) = [
        d
        for d in docs
        if d["kind"] == "Deployment" and d["metadata"]["labels"].get("app.kubernetes.io/component") == "api"
    ]
    (container,) = api["spec"]["template"]["spec"]["containers"]
    return container


def test_provider_keys_come_from_an_optional_secret():
    env = {e["name"]: e for e in _api_container()["env"]}
    for name in SECRET_ENV:  # every credential omnitok reads (and masks in its answers)
        assert name in env, f"{name} is not wired"
        assert "value" not in env[name], f"{name} is written out"
        ref = env[name]["valueFrom"]["secretKeyRef"]
        assert ref == {"name": "omnitok-providers", "key": name, "optional": True}, ref


def test_the_manifest_says_how_to_make_the_secret():
    text = MANIFEST.read_text()
    assert "kubectl create secret generic omnitok-providers" in text
