"""`omnitok calibrate` (issue 28): Claude's offline estimate fitted to a provider's own counts of
the user's texts, measured on held-out texts, stored, used by offline counts, carried by bundles.

The provider is tests/mock_count_api.py: a real HTTP server speaking Anthropic's count_tokens (and
Bedrock's CountTokens) whose tokenizer is DeepSeek V3's BPE, which omnitok's estimate never reads
(it reads o200k_base and cl100k_base). Everything runs through the console script."""

from __future__ import annotations

import ast
import functools
import hashlib
import io
import json
import sysconfig
import tarfile
import time
from pathlib import Path

import pytest

from omnitok import calibration

from ._seed_homes import derived_template, seed
from .console import omnitok
from .mock_count_api import API_KEY, MockCountAPI
from .test_calibrate_features import by_hand_estimate

MODEL = "claude-sonnet-4-5"
STDLIB = Path(sysconfig.get_paths()["stdlib"])


@functools.cache
def texts() -> list[str]:
    """~120 texts of four kinds, from this interpreter's standard library (deterministic); made
    when first used, not at collection (every test process collects this file)."""
    prose, code = [], []
    for name in (
        "argparse",
        "asyncio/events",
        "base64",
        "calendar",
        "csv",
        "difflib",
        "email/message",
        "json/__init__",
    ):
        src = (STDLIB / f"{name}.py").read_text(encoding="utf-8")
        tree = ast.parse(src)
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.ClassDef, ast.Module)):
                doc = ast.get_docstring(node)
                if doc and len(doc) > 300:
                    prose.append(doc)
        code += [src[i : i + 900] for i in range(2000, 2000 + 900 * 4, 900)]
    cjk = []
    for name in ("big5", "cp949", "euc_jp", "euc_kr", "gb2312", "gbk", "shift_jis"):  # prose (not encoding tests)
        f = STDLIB / "test" / "cjkencodings" / f"{name}-utf8.txt"
        lines = [x for x in f.read_text(encoding="utf-8").splitlines() if x.strip()]
        cjk += ["\n".join(lines[i : i + 3]) for i in range(0, len(lines), 3)]
    numbers = [
        "\n".join(
            f"| {i} | {i * 7919 % 1000003} | {i * 31.7:.2f} | 2026-{1 + i % 12:02d}-{1 + i % 28:02d} |"
            for i in range(k, k + 9)
        )
        for k in range(0, 400, 20)
    ]
    return prose[:30] + code[:30] + cjk[:30] + numbers


@pytest.fixture(scope="module")
def api():
    with MockCountAPI() as m:
        yield m


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("corpus") / "texts.jsonl"
    path.write_text("".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in enumerate(texts())), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def derived(tmp_path_factory) -> Path:
    """A template home whose assets/derived/ omnitok filled for o200k_base and cl100k_base (what
    the estimate reads), linked into the fresh homes below (tests/_seed_homes.py): none of these
    tests is about that first-run derivation (~0.2 s of CPU an encoding, each home); the bundle's
    air-gapped host and the homes a bundle is installed into stay bare."""
    return derived_template(tmp_path_factory.mktemp("derived"), ("o200k_base", "cl100k_base"))


def _seeded(home: Path, template: Path) -> Path:
    seed(home, template)
    return home


def _env(api, home, **extra) -> dict:
    return {"OMNITOK_HOME": str(home), "ANTHROPIC_API_KEY": API_KEY, "ANTHROPIC_BASE_URL": api.url, **extra}


@pytest.fixture(scope="module")
def calibrated(api, corpus, derived, tmp_path_factory):
    """One calibration of MODEL on the corpus (40 texts): (its home, the command's answer).

    Its own cache directory: a module fixture runs before conftest's per-test isolated_cache, so
    without one the run would use the user's ~/.cache/omnitok, shared by every run. There the
    framing base (claude_text) measured by an earlier run whose mock server had the same port is
    found, its probe is not sent, and `calls` is 40 or 41 instead of 41..42 (the flake once seen)."""
    home = _seeded(tmp_path_factory.mktemp("home"), derived)
    cache = tmp_path_factory.mktemp("cache")
    before = api.requests
    r = omnitok(
        "calibrate", "-m", MODEL, str(corpus), "--sample", "40", "-q", env=_env(api, home, OMNITOK_CACHE_DIR=str(cache))
    )
    assert r.code == 0, r.err
    out = json.loads(r.out)
    out["served"] = api.requests - before
    return home, out


@pytest.fixture(scope="module")
def counted(calibrated, corpus, tmp_path_factory):
    """`count -m MODEL CORPUS --format jsonl` in the calibrated home (an empty cache of its own, as
    conftest gives each test): the same command line two tests check, run once."""
    home, _ = calibrated
    cache = tmp_path_factory.mktemp("count-cache")
    env = {"OMNITOK_HOME": str(home), "OMNITOK_CACHE_DIR": str(cache)}
    return omnitok("count", "-m", MODEL, str(corpus), "--format", "jsonl", env=env)


def test_calibrate_counts_a_stratified_sample_and_stores_what_it_measured(calibrated, api):
    home, out = calibrated
    # 40 texts, each one call, plus the framing probe of each message variant used (claude_text)
    assert out["texts"] == 40 and out["calls"] == out["served"] and 41 <= out["calls"] <= 42
    cal = json.loads((home / "assets" / "calibrations" / f"{out['id']}.json").read_text())
    assert cal["model"] == MODEL and cal["provider"] == "anthropic" and cal["id"] == out["id"]
    by = cal["sample"]["by_stratum"]
    assert {k: v for k, v in by.items() if v} == {"prose": 8, "code": 8, "numbers": 8, "hangul": 5, "kana": 4, "han": 7}
    assert set(by) == set(calibration.STRATA)
    assert cal["format_version"] == 3 and cal["estimator"]["kind"] == "script-tokens-v3"
    m = cal["measured"]
    assert m["texts"] == 40 and "cross-validation" in m["method"]
    assert 0 < m["median"] < 0.05 and m["median"] <= m["p95"] <= m["error_band"] < 1 and m["coverage"] >= 0.9
    assert {k: out[k] for k in ("median", "p95", "error_band", "coverage")} == {
        k: m[k] for k in ("median", "p95", "error_band", "coverage")
    }
    listed = omnitok("calibrate", "--list", env={"OMNITOK_HOME": str(home)})
    assert listed.code == 0 and [json.loads(x)["id"] for x in listed.out.splitlines()] == [out["id"]]
    shown = omnitok("calibrate", "--show", out["id"], env={"OMNITOK_HOME": str(home)})
    assert shown.code == 0 and json.loads(shown.out) == cal


def test_offline_counts_use_the_calibration_and_name_it(calibrated, counted, corpus, api, ref_o200k, ref_cl100k):
    home, out = calibrated
    r = counted
    assert r.code == 0, r.err
    rows = [json.loads(x) for x in r.out.splitlines()]
    assert {(x["encoding"], x["strategy"], x["exact"], x["error_band"]) for x in rows} == {
        (f"calibration:{out['id']}", "claude-calibrated", False, out["error_band"])
    }
    # the fitted weights over the reference tokenizers' tokens (tiktoken) and the texts' statistics
    data = json.loads((home / "assets" / "calibrations" / f"{out['id']}.json").read_text())
    est = data["estimator"]
    expected = [by_hand_estimate(est, t, ref_o200k, ref_cl100k) for t in texts()]
    assert [x["tokens"] for x in rows] == expected
    # closer to the hidden tokenizer than the built-in estimate, which a model without one keeps
    true = [api.count(t) for t in texts()]
    r0 = omnitok("count", "-m", "claude-opus-4-1", str(corpus), "--format", "jsonl", env={"OMNITOK_HOME": str(home)})
    builtin = [json.loads(x) for x in r0.out.splitlines()]
    assert {(x["encoding"], x["error_band"]) for x in builtin} == {("claude-3~o200k_base", 0.20)}

    def err(rows_):
        return sorted(abs(x["tokens"] - n) / n for x, n in zip(rows_, true, strict=True))[len(true) // 2]

    assert err(rows) < 0.05 < err(builtin)


def test_strict_still_refuses_a_calibrated_estimate(calibrated, corpus):
    home, out = calibrated
    r = omnitok("count", "-m", MODEL, str(corpus), "--strict", env={"OMNITOK_HOME": str(home)})
    assert r.code == 5 and r.out == b""
    assert "estimate (strategy claude-calibrated" in r.err and "Traceback" not in r.err


def test_max_calls_bounds_every_provider_call(api, corpus, derived, tmp_path):
    _seeded(tmp_path, derived)
    before = api.requests
    r = omnitok(
        "calibrate", "-m", MODEL, str(corpus), "--sample", "40", "--max-calls", "25", "-q", env=_env(api, tmp_path)
    )
    assert r.code == 0, r.err
    out = json.loads(r.out)
    assert out["texts"] == 23 and out["calls"] <= 25 and api.requests - before == out["calls"]
    before = api.requests
    r = omnitok("calibrate", "-m", MODEL, str(corpus), "--max-calls", "10", env=_env(api, tmp_path / "b"))
    assert r.code == 2 and api.requests == before
    assert r.err.startswith("omnitok: error: --max-calls 10 leaves room for 8 texts") and r.err.count("\n") == 1


def test_a_rate_limit_answer_is_retried_after_the_time_it_names(api, corpus, derived, tmp_path):
    _seeded(tmp_path, derived)
    body = {"type": "error", "error": {"type": "rate_limit_error", "message": "slow down"}}
    api.fail((429, {"retry-after": "1"}, body))
    before = api.requests
    t0 = time.monotonic()
    r = omnitok(
        "calibrate", "-m", MODEL, str(corpus), "--sample", "20", "--concurrency", "1", "-q", env=_env(api, tmp_path)
    )
    took = time.monotonic() - t0
    assert r.code == 0, r.err
    out = json.loads(r.out)
    # 20 texts, the framing probe of each variant used (1 or 2), and the one call retried
    assert out["texts"] == 20 and out["calls"] == api.requests - before and out["calls"] - 20 - 1 in (1, 2)
    assert took >= 1.0


def test_provider_failures_and_usage_errors_are_one_line(api, corpus, tmp_path):
    bad = omnitok(
        "calibrate", "-m", MODEL, str(corpus), env=_env(api, tmp_path, ANTHROPIC_API_KEY="sk-wrong-key-123456")
    )
    assert bad.code == 1 and bad.err.startswith("omnitok: error: anthropic: HTTP 401") and bad.err.count("\n") <= 2
    assert "sk-wrong-key-123456" not in bad.err and not (tmp_path / "assets" / "calibrations").exists()
    cases = [
        (("-m", MODEL, str(corpus)), {"ANTHROPIC_API_KEY": ""}, "ANTHROPIC_API_KEY is not set"),
        (("-m", "gpt-4o", str(corpus)), {}, "'gpt-4o' is a openai model"),
        ((str(corpus),), {}, "give the model to calibrate"),
        (("--show", "../etc/passwd"), {}, "is not a calibration id"),
        (("--show", "no-such-id"), {}, "no calibration 'no-such-id'"),
        (("-m", MODEL, str(corpus), "--sample", "5"), {}, "--sample must be at least 20"),
    ]
    for args, env, message in cases:
        r = omnitok("calibrate", *args, env=_env(api, tmp_path, **env))
        assert r.code == 2 and message in r.err and r.err.count("\n") == 1 and "Traceback" not in r.err, (args, r.err)


def test_bedrock_claude_ids_calibrate_through_count_tokens(api, corpus, derived, tmp_path):
    _seeded(tmp_path, derived)
    env = _env(
        api,
        tmp_path,
        AWS_ACCESS_KEY_ID="AKIDTEST",
        AWS_SECRET_ACCESS_KEY="aws-SECRET-value",
        AWS_REGION="us-west-2",
        AWS_ENDPOINT_URL_BEDROCK_RUNTIME=api.url,
    )
    model = "anthropic.claude-3-5-sonnet-20240620-v1:0"
    r = omnitok("calibrate", "-m", model, str(corpus), "--sample", "20", "-q", env=env)
    assert r.code == 0, r.err
    out = json.loads(r.out)
    assert out["provider"] == "bedrock" and out["model"] == model and out["id"].startswith("anthropic.claude-3-5")
    c = omnitok("count", "-m", model, "--text", "hello there, calibrated world", "--format", "jsonl", env=env)
    assert json.loads(c.out)["encoding"] == f"calibration:{out['id']}"


def test_a_bundle_carries_a_calibration_to_another_host(calibrated, counted, corpus, tmp_path):
    home, out = calibrated
    bundle = tmp_path / "cal.tar.gz"
    r = omnitok("bundle", "create", "--calibration", out["id"], "-o", str(bundle), env={"OMNITOK_HOME": str(home)})
    assert r.code == 0, r.err
    assert json.loads(r.out)["models"] == [MODEL]
    other = tmp_path / "air-gapped"
    r = omnitok("bundle", "install", str(bundle), env={"OMNITOK_HOME": str(other)})
    assert r.code == 0, r.err
    a = omnitok("count", "-m", MODEL, str(corpus), "--format", "jsonl", env={"OMNITOK_HOME": str(other)})
    b = counted  # the same count in the calibrating home
    assert a.code == 0 and a.out == b.out and f"calibration:{out['id']}".encode() in a.out
    missing = omnitok(
        "bundle", "create", "--calibration", "nope-123", "-o", str(tmp_path / "x.tgz"), env={"OMNITOK_HOME": str(home)}
    )
    assert missing.code == 2 and "no calibration 'nope-123'" in missing.err


def _bundle_with(path: Path, rel: str, data: bytes) -> None:
    """A bundle whose manifest lists `data` at `rel` with its true hashes."""
    from blake3 import blake3

    manifest = {
        "format": "omnitok-bundle",
        "format_version": 1,
        "name": "forged",
        "files": [
            {
                "path": rel,
                "size": len(data),
                "sha256": hashlib.sha256(data).hexdigest(),
                "blake3": blake3(data).hexdigest(),
            }
        ],
    }
    with tarfile.open(path, "w:gz") as tar:
        for name, blob in (("manifest.json", json.dumps(manifest).encode()), ("files/" + rel, data)):
            info = tarfile.TarInfo(name)
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))


def test_install_refuses_a_calibration_that_counting_would_not_read(calibrated, tmp_path):
    home, out = calibrated
    good = (home / "assets" / "calibrations" / f"{out['id']}.json").read_bytes()
    data = json.loads(good)
    data["estimator"]["weights"][0] = float("nan")
    cases = {
        "weights": (f"calibrations/{out['id']}.json", json.dumps(data).encode().replace(b"NaN", b"1e999")),
        "renamed": ("calibrations/another-id.json", good),
        "not json": (f"calibrations/{out['id']}.json", b"{not json"),
    }
    for what, (rel, blob) in cases.items():
        bundle = tmp_path / f"{what.replace(' ', '-')}.tar.gz"
        _bundle_with(bundle, rel, blob)
        target = tmp_path / f"home-{what.replace(' ', '-')}"
        r = omnitok("bundle", "install", str(bundle), env={"OMNITOK_HOME": str(target)})
        assert r.code == 1 and "refused" in r.err and "calibration" in r.err and "Traceback" not in r.err, (what, r.err)
        assert not (target / "assets" / "calibrations").exists()
        v = omnitok("bundle", "verify", str(bundle), env={"OMNITOK_HOME": str(target)})
        assert v.code == 1 and json.loads(v.out)["ok"] is False


def test_a_damaged_calibration_is_named_and_not_used(calibrated, derived, tmp_path):
    home, out = calibrated
    _seeded(tmp_path, derived)
    store = tmp_path / "assets" / "calibrations"
    store.mkdir(parents=True)
    (store / f"{out['id']}.json").write_text('{"format": "omnitok-calibration", "format_version": 1}')
    env = {"OMNITOK_HOME": str(tmp_path)}
    shown = omnitok("calibrate", "--show", out["id"], env=env)
    assert shown.code == 1 and "not a valid omnitok calibration" in shown.err
    c = omnitok("count", "-m", MODEL, "--text", "some words to count", "--format", "jsonl", env=env)
    assert c.code == 0 and json.loads(c.out)["encoding"] == "claude-3~o200k_base"
    assert "omnitok: warning:" in c.err and out["id"] in c.err


def test_the_python_api_counts_with_an_installed_calibration(calibrated, monkeypatch):
    import omnitok

    home, out = calibrated
    monkeypatch.setenv("OMNITOK_HOME", str(home))
    r = omnitok.count(texts()[0], model=MODEL)
    assert (r.encoding, r.strategy, r.exact, r.error_band) == (
        f"calibration:{out['id']}",
        "claude-calibrated",
        False,
        out["error_band"],
    )
    monkeypatch.setenv("OMNITOK_HOME", str(home / "elsewhere"))
    assert omnitok.count(texts()[0], model=MODEL).encoding == "claude-3~o200k_base"
