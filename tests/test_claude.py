"""Claude offline: a calibrated estimate, labelled as such, reproducing the public points."""

import pytest

import omnitok
from omnitok import families
from omnitok.families import claude


@pytest.mark.parametrize(
    "model,gen",
    [
        ("claude-3-haiku-20240307", "claude-3"),
        ("claude-3-5-sonnet-20241022", "claude-3"),
        ("claude-3-7-sonnet-latest", "claude-3"),
        ("claude-sonnet-4-20250514", "claude-3"),
        ("claude-opus-4-1", "claude-3"),
        ("claude-sonnet-4-5", "claude-3"),
        ("claude-opus-4-6", "claude-3"),
        ("claude-opus-4-7", "claude-4.7"),
        ("claude-sonnet-5", "claude-4.7"),
        ("anthropic.claude-3-5-sonnet-20240620-v1:0", "claude-3"),
        ("us.anthropic.claude-sonnet-4-5-20250929-v1:0", "claude-3"),
        ("global.anthropic.claude-opus-4-7-v1:0", "claude-4.7"),
        ("anthropic/claude-haiku-4-5", "claude-3"),
        ("claude-2.1", "claude-2"),
        ("claude-instant-1.2", "claude-2"),
        ("gpt-4o", None),
    ],
)
def test_generation(model, gen):
    assert claude.generation(model) == gen
    if gen:
        assert families.resolve(model).family == "claude"


def test_regression_pin_estimate_is_scaled_o200k_and_labelled(ref_o200k):
    """Regression pin: 1.16 (prose), 1.30 (code) and the newer generation's factor are constants
    claude.py itself defines (taken from published Claude calibration points, hence exact=False and
    the error band); this guards them and the labels against an accidental change, it does not
    show they are right. Exact Claude counts come from the online path, tested against a server
    speaking Anthropic's real wire format (tests/test_online.py)."""
    prose = "The committee met on Tuesday to discuss the budget and agreed to postpone the vote."
    code = "def f(x):\n    return {k: v for k, v in x.items() if v}  # filter\n"
    r = omnitok.count_batch([prose, code], model="claude-sonnet-4-5")
    assert [x.tokens for x in r] == [
        round(len(ref_o200k.encode_ordinary(prose)) * 1.16),
        round(len(ref_o200k.encode_ordinary(code)) * 1.30),
    ]
    assert {(x.strategy, x.exact, x.error_band) for x in r} == {("claude-calibrated", False, 0.20)}
    newer = omnitok.count(prose, model="claude-opus-4-7")
    assert newer.tokens == round(len(ref_o200k.encode_ordinary(prose)) * 1.16 * 1.30) and newer.error_band == 0.30


def test_regression_pin_anthropic_documented_chat_example():
    """Regression pin: the chat framing's overhead was fitted to this documented example."""
    # Anthropic docs: claude-sonnet-4-5, system "You are a scientist" + user "Hello, Claude" = 14.
    msgs = [{"role": "system", "content": "You are a scientist"}, {"role": "user", "content": "Hello, Claude"}]
    assert omnitok.count(msgs, model="claude-sonnet-4-5").tokens == 14


def test_cli_marks_estimates(cli):
    r = cli("count", "-m", "claude-opus-4-7", "--format", "json", stdin=b"hello")
    row = __import__("orjson").loads(r.out)
    assert row["exact"] is False and row["strategy"] == "claude-calibrated" and row["error_band"] == 0.30


def test_image_block_is_an_error():
    msgs = [{"role": "user", "content": [{"type": "image", "source": {}}]}]
    with pytest.raises(omnitok.OmnitokError, match=r"a 'image' block cannot be counted offline"):
        omnitok.count(msgs, model="claude-sonnet-4-5")
