import pytest

import omnitok
from omnitok import families
from omnitok.errors import UnknownModelError, UsageError

# openai-cookbook, How_to_count_tokens_with_tiktoken, section 6: the figures it prints (and the
# API confirmed) for these messages.
COOKBOOK_MESSAGES = [
    {
        "role": "system",
        "content": "You are a helpful, pattern-following assistant that translates corporate jargon "
        "into plain English.",
    },
    {"role": "system", "name": "example_user", "content": "New synergies will help drive top-line growth."},
    {
        "role": "system",
        "name": "example_assistant",
        "content": "Things working well together will increase revenue.",
    },
    {
        "role": "system",
        "name": "example_user",
        "content": "Let's circle back when we have more bandwidth to touch base on opportunities for "
        "increased leverage.",
    },
    {
        "role": "system",
        "name": "example_assistant",
        "content": "Let's talk later when we're less busy about how to do better.",
    },
    {
        "role": "user",
        "content": "This late pivot means we don't have time to boil the ocean for the client deliverable.",
    },
]


@pytest.mark.parametrize(
    "model,expected",
    [("gpt-3.5-turbo", 129), ("gpt-4-0613", 129), ("gpt-4", 129), ("gpt-4o", 124), ("gpt-4o-mini", 124)],
)
def test_cookbook_chat_counts(model, expected):
    assert omnitok.count(COOKBOOK_MESSAGES, model=model).tokens == expected


def test_chat_rule_parts(ref_o200k):
    msgs = [{"role": "user", "content": [{"type": "text", "text": "hello"}, {"type": "text", "text": " world"}]}]
    expected = 3 + len(ref_o200k.encode("user")) + len(ref_o200k.encode("hello")) + len(ref_o200k.encode(" world")) + 3
    assert omnitok.count(msgs, model="gpt-4o").tokens == expected


def test_chat_name_and_legacy_rule(ref_cl100k):
    msgs = [{"role": "user", "name": "bob", "content": "hi"}]
    body = sum(len(ref_cl100k.encode(v)) for v in ("user", "bob", "hi"))
    assert omnitok.count(msgs, model="gpt-4").tokens == 3 + body + 1 + 3
    assert omnitok.count(msgs, model="gpt-3.5-turbo-0301").tokens == 4 + body - 1 + 3


def test_image_part_is_an_error_not_an_undercount():
    msgs = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]
    with pytest.raises(UsageError, match=r"messages\[0\]\.content\[0\]: a 'image_url' part cannot be counted"):
        omnitok.count(msgs, model="gpt-4o")


@pytest.mark.parametrize(
    "model,encoding",
    [
        ("gpt-4o", "o200k_base"),
        ("gpt-4o-2024-08-06", "o200k_base"),
        ("gpt-4o-mini", "o200k_base"),
        ("gpt-4.1", "o200k_base"),
        ("gpt-4.1-nano-2025-04-14", "o200k_base"),
        ("o1", "o200k_base"),
        ("o1-preview", "o200k_base"),
        ("o3-mini", "o200k_base"),
        ("o4-mini", "o200k_base"),
        ("gpt-5", "o200k_base"),
        ("gpt-5-mini", "o200k_base"),
        ("gpt-5.1", "o200k_base"),
        ("openai/gpt-4o", "o200k_base"),
        ("ft:gpt-4o-mini-2024-07-18:org::abc", "o200k_base"),
        ("gpt-4", "cl100k_base"),
        ("gpt-4-turbo-2024-04-09", "cl100k_base"),
        ("gpt-3.5-turbo", "cl100k_base"),
        ("gpt-35-turbo-16k", "cl100k_base"),
        ("text-embedding-3-small", "cl100k_base"),
        ("text-embedding-ada-002", "cl100k_base"),
        ("text-davinci-003", "p50k_base"),
        ("davinci", "r50k_base"),
    ],
)
def test_registry(model, encoding):
    assert families.resolve(model).encoding == encoding


def test_registry_agrees_with_tiktoken():
    import tiktoken.model as tm

    for name, enc in tm.MODEL_TO_ENCODING.items():
        if enc == "gpt2" or name.startswith(("text-similarity", "text-search", "code-search", "code-cushman")):
            continue
        if name.startswith(("text-", "code-", "gpt-", "o", "davinci", "curie", "babbage", "ada")):
            try:
                ours = families.resolve(name).encoding
            except UnknownModelError:
                continue
            assert ours == enc, name


def test_unknown_model_suggests():
    with pytest.raises(UnknownModelError) as info:
        families.resolve("gpt4o")
    assert "gpt-4o" in info.value.suggestions
    assert len(set(info.value.suggestions)) == len(info.value.suggestions)


def test_encoding_override():
    r = omnitok.count("hello world", model="my-deployment", encoding="cl100k_base")
    assert (r.tokens, r.model, r.encoding, r.exact) == (2, "my-deployment", "cl100k_base", True)


def test_count_batch_mixed(ref_o200k):
    texts = ["a b c", "", "héllo wörld"]
    results = omnitok.count_batch(texts + [COOKBOOK_MESSAGES], model="gpt-4o")
    assert [r.tokens for r in results] == [len(ref_o200k.encode_ordinary(t)) for t in texts] + [124]
