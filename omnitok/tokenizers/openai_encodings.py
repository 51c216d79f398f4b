"""OpenAI's BPE encodings as data: what a .tiktoken rank file does not carry.

The split patterns and special tokens are those of tiktoken_ext/openai_public.py
(tests/test_openai_encodings.py checks them against the installed tiktoken).
"""

from __future__ import annotations

from dataclasses import dataclass

_BASE_URL = "https://openaipublic.blob.core.windows.net/encodings/"

R50K_PAT = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s"""
CL100K_PAT = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+"""
    r"""|\s++$|\s*[\r\n]|\s+(?!\S)|\s"""
)
O200K_PAT = "|".join(
    [
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""\p{N}{1,3}""",
        r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
        r"""\s*[\r\n]+""",
        r"""\s+(?!\S)""",
        r"""\s+""",
    ]
)

ENDOFTEXT = "<|endoftext|>"
FIM_PREFIX = "<|fim_prefix|>"
FIM_MIDDLE = "<|fim_middle|>"
FIM_SUFFIX = "<|fim_suffix|>"
ENDOFPROMPT = "<|endofprompt|>"

# gpt-oss's Harmony chat format: o200k_base's ranks and split pattern with more special tokens.
O200K_HARMONY_SPECIALS = {
    ENDOFTEXT: 199999,
    ENDOFPROMPT: 200018,
    "<|startoftext|>": 199998,
    "<|reserved_200000|>": 200000,
    "<|reserved_200001|>": 200001,
    "<|return|>": 200002,
    "<|constrain|>": 200003,
    "<|reserved_200004|>": 200004,
    "<|channel|>": 200005,
    "<|start|>": 200006,
    "<|end|>": 200007,
    "<|message|>": 200008,
    "<|reserved_200009|>": 200009,
    "<|reserved_200010|>": 200010,
    "<|reserved_200011|>": 200011,
    "<|call|>": 200012,
} | {f"<|reserved_{i}|>": i for i in range(200013, 201088)}


@dataclass(frozen=True, slots=True)
class EncodingSpec:
    name: str
    file: str  # rank file name (p50k_edit shares p50k_base's)
    sha256: str
    pat_str: str
    special_tokens: dict[str, int]
    gigatoken_pretokenizer: str | None  # None: gigatoken cannot load this rank file
    explicit_n_vocab: int | None = None

    @property
    def url(self) -> str:
        return _BASE_URL + self.file + ".tiktoken"


ENCODINGS: dict[str, EncodingSpec] = {
    spec.name: spec
    for spec in (
        EncodingSpec(
            "o200k_base",
            "o200k_base",
            "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
            O200K_PAT,
            {ENDOFTEXT: 199999, ENDOFPROMPT: 200018},
            "o200k",
        ),
        EncodingSpec(
            "o200k_harmony",
            "o200k_base",  # the same rank file: counts of plain text equal o200k_base's
            "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
            O200K_PAT,
            O200K_HARMONY_SPECIALS,
            "o200k",
        ),
        EncodingSpec(
            "cl100k_base",
            "cl100k_base",
            "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
            CL100K_PAT,
            {
                ENDOFTEXT: 100257,
                FIM_PREFIX: 100258,
                FIM_MIDDLE: 100259,
                FIM_SUFFIX: 100260,
                ENDOFPROMPT: 100276,
            },
            "gpt4",
        ),
        EncodingSpec(
            "p50k_base",
            "p50k_base",
            "94b5ca7dff4d00767bc256fdd1b27e5b17361d7b8a5f968547f9f23eb70d2069",
            R50K_PAT,
            {ENDOFTEXT: 50256},
            None,  # its ranks leave a gap at 50256, which gigatoken's loader rejects
            50281,
        ),
        EncodingSpec(
            "p50k_edit",
            "p50k_base",
            "94b5ca7dff4d00767bc256fdd1b27e5b17361d7b8a5f968547f9f23eb70d2069",
            R50K_PAT,
            {ENDOFTEXT: 50256, FIM_PREFIX: 50281, FIM_MIDDLE: 50282, FIM_SUFFIX: 50283},
            None,
        ),
        EncodingSpec(
            "r50k_base",
            "r50k_base",
            "306cd27f03c1a714eca7108e03d66b7dc042abe8c258b44c199a7ed9838dd930",
            R50K_PAT,
            {ENDOFTEXT: 50256},
            "gpt2",
            50257,
        ),
    )
}

# tiktoken's names for encodings omnitok has under another name. tiktoken's gpt2 is r50k_base's
# ranks, split pattern and <|endoftext|>, read from GPT-2's vocab.bpe and encoder.json.
ALIASES: dict[str, str] = {"gpt2": "r50k_base"}
