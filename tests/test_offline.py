"""The embedded default works with no network and nothing prepared: a fresh HOME, an empty
TIKTOKEN_CACHE_DIR, and every socket connection refused."""

import os
import subprocess
import sys

import orjson
import pytest

BLOCK_SOCKETS = """
import socket
class _Blocked(socket.socket):
    def connect(self, *a, **k):
        raise OSError("network blocked by test")
    connect_ex = connect
socket.socket = _Blocked
def _no_dns(*a, **k):
    raise OSError("network blocked by test")
socket.getaddrinfo = _no_dns
socket.create_connection = _no_dns
"""

TEXTS = ["hello world", "<|endoftext|> is text here", "日本語 and emoji 🎉", "def f():\n    return 1\n"]


@pytest.fixture
def offline_env(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(BLOCK_SOCKETS)
    cache = tmp_path / "tiktoken-cache"
    cache.mkdir()
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path / "home"),
        "TIKTOKEN_CACHE_DIR": str(cache),
        "XDG_CACHE_HOME": str(tmp_path / "xdg-cache"),
        "XDG_DATA_HOME": str(tmp_path / "xdg-data"),
        "PYTHONPATH": str(site),
        "HF_HUB_OFFLINE": "1",
    }
    return env, cache


def test_sockets_really_blocked(offline_env):
    env, _ = offline_env
    code = "import socket; socket.create_connection(('127.0.0.1', 9))"
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert r.returncode != 0 and "network blocked by test" in r.stderr


@pytest.mark.parametrize("model,ref", [("gpt-4o", "ref_o200k"), ("gpt-4", "ref_cl100k")])
@pytest.mark.parametrize("engine", ["auto", "tiktoken"])
def test_count_offline_fresh_home(offline_env, model, ref, engine, request):
    env, cache = offline_env
    enc = request.getfixturevalue(ref)
    data = b"".join(orjson.dumps({"text": t}) + b"\n" for t in TEXTS)
    r = subprocess.run(
        [sys.executable, "-m", "omnitok", "count", "-m", model, "--engine", engine],
        input=data,
        env=env,
        capture_output=True,
    )
    assert r.returncode == 0, r.stderr.decode()
    counts = [orjson.loads(line)["tokens"] for line in r.stdout.splitlines()]
    assert counts == [len(enc.encode_ordinary(t)) for t in TEXTS]
    assert list(cache.iterdir()) == []  # nothing was downloaded or cached


def test_corrupt_vocabulary_is_refused(tmp_path, monkeypatch):
    from omnitok.assets import store
    from omnitok.errors import AssetError

    bad = tmp_path / "openai"
    bad.mkdir()
    (bad / "o200k_base.tiktoken").write_bytes(b"dGVzdA== 0\n")
    monkeypatch.setattr(store, "EMBEDDED_DIR", tmp_path)
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path / "empty"))
    with pytest.raises(AssetError, match="has sha256 .* expected 446a9538"):
        store.find_tiktoken_file("o200k_base", "https://x/o200k_base.tiktoken", "446a9538" + "0" * 56)


def test_legacy_encoding_not_embedded_says_how(tmp_path, monkeypatch):
    from omnitok.errors import AssetError
    from omnitok.tokenizers.tiktoken_strategy import TiktokenStrategy

    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("OMNITOK_HOME", str(tmp_path / "home"))
    with pytest.raises(AssetError, match="p50k_base vocabulary is not embedded") as info:
        TiktokenStrategy("p50k_base")
    assert "p50k_base.tiktoken" in info.value.hint
