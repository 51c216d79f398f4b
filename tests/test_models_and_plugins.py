"""`omnitok models`, `--explain`, and third-party families through the entry-point group."""

from importlib.metadata import EntryPoint

import orjson
import pytest

import omnitok
from omnitok import families


def test_models_json(cli):
    r = cli("models", "--json")
    assert r.code == 0
    data = orjson.loads(r.out)
    assert [f["family"] for f in data["families"]] == ["openai", "claude", "gemini", "hf"]
    openai = data["families"][0]["models"]
    assert {"model": "gpt-4o", "kind": "id", "target": "o200k_base"} in openai
    assert {"model": "gpt-4o-*", "kind": "prefix", "target": "o200k_base"} in openai
    claude = {row["target"]: row["error_band"] for row in data["families"][1]["models"]}
    assert claude == {"claude-2": 0.05, "claude-3": 0.20, "claude-4.7": 0.30}
    assets = {(a["family"], a["asset"]): a for a in data["assets"]}
    assert assets[("openai", "o200k_base")]["present"] and assets[("openai", "o200k_base")]["where"] == "embedded"


def test_models_one_id(cli):
    r = cli("models", "--json", "gpt-4o-mini")
    info = orjson.loads(r.out)
    assert (info["family"], info["target"], info["strategy"], info["exact"]) == (
        "openai",
        "o200k_base",
        "tiktoken",
        True,
    )
    assert info["reason"] == "prefix 'gpt-4o-'" and info["fingerprint"].startswith("tiktoken:o200k_base:")


def test_count_explain(cli):
    r = cli("count", "-m", "claude-opus-4-7", "--explain", stdin=b"hi")
    assert "family: claude" in r.err and "strategy: claude-calibrated" in r.err and "exact: False" in r.err


class ToyFamily(families.Family):
    """A plugin family: 'toy-*' ids counted one token per character."""

    name = "toy"
    order = 5
    chain = "local exact (one token per character)"

    class Strategy:
        name = "toy-chars"
        exact = True
        encoding = "toy"
        engine = "toy"
        source = "plugin"
        fingerprint = "toy:v1"

        def count_batch(self, texts):
            return [len(t) for t in texts]

    def resolve(self, model):
        return families.Resolution(model, "toy", "toy", "toy", "toy plugin") if model.startswith("toy-") else None

    def offline(self, res, opts):
        return self.Strategy()

    def rows(self):
        return [{"model": "toy-*", "kind": "prefix", "target": "toy"}]


@pytest.fixture
def with_plugin(monkeypatch):
    import importlib.metadata

    real = importlib.metadata.entry_points

    def fake(group):
        eps = list(real(group=group))
        if group == "omnitok.families":
            eps.append(EntryPoint("toy", "tests.test_models_and_plugins:ToyFamily", group))
        return eps

    monkeypatch.setattr(importlib.metadata, "entry_points", fake)
    families.plugin_families.cache_clear()
    yield
    families.plugin_families.cache_clear()


def test_plugin_family_through_entry_points(with_plugin, cli):
    assert [f.name for f in families.families()] == ["openai", "claude", "gemini", "toy", "hf"]
    r = omnitok.count("hello", model="toy-1")
    assert (r.tokens, r.strategy, r.exact) == (5, "toy-chars", True)
    out = cli("count", "-m", "toy-2", "--format", "json", stdin=b"abc")
    assert orjson.loads(out.out)["tokens"] == 3
    assert omnitok.count("hello", model="gpt-4o").tokens == 1  # built-ins still resolve


def test_builtins_are_registered_as_entry_points():
    from importlib.metadata import entry_points

    names = {ep.name: ep.value for ep in entry_points(group="omnitok.families")}
    assert names == {
        "openai": "omnitok.families:OpenAIFamily",
        "claude": "omnitok.families:ClaudeFamily",
        "gemini": "omnitok.families:GeminiFamily",
        "hf": "omnitok.families:HFFamily",
    }


def test_version_flag(cli):
    r = cli("--version")
    assert (r.code, r.text) == (0, f"omnitok {omnitok.__version__}\n")


class ToyHubFamily(ToyFamily):
    """A plugin family counting with a Hugging Face tokenizer it names: it says which files a
    bundle needs (Family.bundle_files), and the bundle carries them without knowing the family."""

    name = "toyhub"

    def resolve(self, model):
        return (
            families.Resolution(model, "toyhub", "toy/tok", "toy", "toy plugin")
            if model.startswith("toyhub-")
            else None
        )

    def bundle_files(self, res):
        return (families.BundleFiles("hf", res.target),)


def test_a_plugin_family_says_what_a_bundle_carries(monkeypatch, tmp_path):
    from omnitok.bundle import Recipe, create, inspect
    from omnitok.bundle.sources import BundleError

    from .hf_assets import TOKENIZERS

    monkeypatch.setattr(families, "plugin_families", lambda: (ToyHubFamily(), ToyFamily()))
    qwen_dir = TOKENIZERS["qwen2.5"][0]
    bundle = create(Recipe("toy", ["toyhub-1"], local_dirs={"toy/tok": str(qwen_dir)}), str(tmp_path / "t.tar.gz"))
    files = inspect(str(bundle))["models"]["toyhub-1"]
    assert "hf/toy--tok/tokenizer.json" in files and all(f.startswith("hf/toy--tok/") for f in files)
    # A family that names no files (the default) cannot be bundled, whatever its name.
    with pytest.raises(BundleError, match="toy-1: the toy family has no files to bundle"):
        create(Recipe("t2", ["toy-1"]), str(tmp_path / "t2.tar.gz"))
