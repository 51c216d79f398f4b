"""What a user sees offline, through the console script: `bundle create` of a hub model with no hub
reachable is one line naming the model and what to do (exit 1, no traceback); an exact online
count (vLLM's /tokenize) warns of nothing, and the offline estimate's warning comes only when the
estimate counts."""

from __future__ import annotations

import json

from tests.console import omnitok
from tests.mock_providers import MockProviders, words

MODEL = "Qwen/Qwen2.5-7B-Instruct"


def test_bundle_create_of_a_hub_model_offline_says_what_to_do(tmp_path):
    out = tmp_path / "t.tar.gz"
    for offline in ("0", "1"):  # the hub refuses the connection; huggingface_hub's offline mode
        r = omnitok(
            "bundle", "create", "--models", MODEL, "-o", str(out),
            env={"HF_ENDPOINT": "http://127.0.0.1:1", "HF_HUB_OFFLINE": offline, "OMNITOK_HOME": str(tmp_path / "home")},
            cwd=tmp_path,
        )  # fmt: skip
        assert r.code == 1, r.err
        errors = [line for line in r.err.splitlines() if line.startswith("omnitok: error:")]
        assert len(errors) == 1 and "Traceback" not in r.err and "│" not in r.err, r.err
        assert MODEL in errors[0] and "cannot reach the Hugging Face hub" in errors[0]
        assert f"--local {MODEL}=DIR" in errors[0] and "where the hub is reachable" in errors[0]
        assert not out.exists()


def _count(env: dict, tmp_path) -> tuple:
    r = omnitok(
        "count", "--online", "-m", MODEL, "--text", "hello world", "--format", "jsonl", "--no-cache",
        env={"HF_HUB_OFFLINE": "1", "OMNITOK_HOME": str(tmp_path / "home"), "OMNITOK_RETRIES": "0", **env},
    )  # fmt: skip
    assert r.code == 0, r.err
    return json.loads(r.out), r.err


def test_an_exact_online_count_warns_of_nothing(tmp_path):
    mock = MockProviders()
    try:
        row, err = _count({"VLLM_ENDPOINT": mock.url + "/v1"}, tmp_path)
    finally:
        mock.close()
    assert (row["strategy"], row["exact"], row["tokens"]) == ("vllm-api", True, words("hello world") + 1)
    assert err == "", err  # no "counting ... with the heuristic"


def test_the_estimates_warning_comes_when_the_estimate_counts(tmp_path):
    row, err = _count({"VLLM_ENDPOINT": "http://127.0.0.1:1/v1"}, tmp_path)  # vLLM is down
    assert (row["strategy"], row["exact"]) == ("heuristic", False)
    assert "vllm: cannot reach" in err and f"counting {MODEL} with the heuristic (exact: false" in err
