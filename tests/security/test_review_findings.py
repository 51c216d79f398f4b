"""Defects an adversarial review of issue 23's change found, each pinned by a test that failed
before its fix: a lone surrogate (valid JSON: "\\ud800") in a /compress or /validate text made the
embedding tokenizer raise TypeError (a 500); every online count was labelled strategy="other" in
/metrics; the refusal of an id holding '/..' read "holds '<path>'" over REST."""

from __future__ import annotations

import re

import pytest

from omnitok.errors import UsageError


def test_lone_surrogates_reach_the_embedding_tokenizer_cleaned():
    """BERTScore (and dense compression, through the same tokenizer helper) on texts holding lone
    surrogates: scored, as tiktoken counts such texts, instead of a TypeError."""
    pytest.importorskip("tokenizers")
    import omnitok

    r = omnitok.validate("a b c. \udc80 d e f.", "a \ud800 c", metrics=("bertscore",))
    assert 0.0 < r.details["bertscore_f1"] <= 1.0
    clean = omnitok.validate("a b c. \ufffd d e f.", "a \ufffd c", metrics=("bertscore",))
    assert r.details["bertscore_f1"] == pytest.approx(clean.details["bertscore_f1"])


def test_online_strategies_are_metric_labels_of_their_own():
    from omnitok.remote import providers
    from omnitok.serve.metrics import Metrics

    online = {cls.strategy for cls in (providers.Anthropic, providers.Gemini, providers.VLLM, providers.SelfHosted, providers.Bedrock)}  # fmt: skip
    m = Metrics()
    for strategy in online:
        m.counted("gpt-4o", strategy, 3, 1)
    labels = set(re.findall(r'strategy="([^"]*)"', m.render().decode()))
    assert labels == online


@pytest.mark.parametrize("model", ["gemini-x/../../../v1beta/tunedModels", "org/../x", "hf:org/..x"])
def test_a_dot_dot_refusal_says_what_over_rest(model):
    from omnitok.families import check_id
    from omnitok.serve.errors import error_body

    with pytest.raises(UsageError) as e:
        check_id(model)
    message = error_body("invalid_input", e.value.message)["error"]["message"]
    assert "<path>" not in message and "'..' after a slash" in message, message
