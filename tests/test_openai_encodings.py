"""omnitok's encoding table must say exactly what tiktoken's openai_public says."""

import pytest
import tiktoken_ext.openai_public as public

from omnitok.tokenizers.openai_encodings import ENCODINGS


@pytest.mark.parametrize("name", sorted(ENCODINGS))
def test_spec_matches_tiktoken(name, monkeypatch):
    seen = {}

    def fake_load(url, expected_hash=None):
        seen["url"], seen["hash"] = url, expected_hash
        return {b"a": 0}

    monkeypatch.setattr(public, "load_tiktoken_bpe", fake_load)
    theirs = getattr(public, name)()
    ours = ENCODINGS[name]
    assert ours.pat_str == theirs["pat_str"]
    assert ours.special_tokens == theirs["special_tokens"]
    assert ours.explicit_n_vocab == theirs.get("explicit_n_vocab")
    assert ours.url == seen["url"]
    assert ours.sha256 == seen["hash"]
