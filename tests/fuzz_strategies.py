"""Hypothesis strategies for tests/test_fuzz.py: hostile records (as raw JSONL lines), option
values, and ways to damage a file. Kept apart so that the test module reads as its oracle."""

from __future__ import annotations

import orjson
from hypothesis import strategies as st

# --- values found inside records ----------------------------------------------------------------

# Numbers JSON allows but programs trip over: past 64 bits, past a double, negative zero, exponents.
BIG_NUMBERS = [
    "0",
    "-0",
    "-0.0",
    "1e309",
    "-1e309",
    "1e-400",
    "18446744073709551616",
    "-9223372036854775809",
    "123456789012345678901234567890123456789",
    "9" * 400,
    "1.5",
    "2.5e3",
]

# Strings as JSON source text: lone and reversed surrogates, NUL and control characters, bidi and
# BOM, a special-token lookalike, CJK, astral characters, and the separators JSON lets through raw.
RAW_STRINGS = [
    r'"\ud800"',
    r'"\udfff x"',
    r'"\udc00\ud800"',
    r'"a\u0000b"',
    r'"\u001b[31mred\u001b[0m"',
    r'"\u202eevil"',
    r'"\ufeffbom"',
    r'"\ufffe\uffff"',
    r'"<|endoftext|>"',
    '"\u2028\u2029"',
    '"中文 テキスト 한국어"',
    '"\U000323b0 new letter"',
    '"😀👍🏽"',
    '""',
    '" "',
    r'"line\r\nbreak\n"',
    '"|pipe| ## head"',
    r'"\\"',
]

SIMPLE_TEXT = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]),
    max_size=40,
)


def json_source(value) -> str:
    return orjson.dumps(value).decode()


@st.composite
def raw_scalar(draw) -> str:
    """One JSON value as source text, including spellings orjson would never write."""
    kind = draw(st.integers(0, 6))
    if kind == 0:
        return draw(st.sampled_from(BIG_NUMBERS))
    if kind == 1:
        return draw(st.sampled_from(RAW_STRINGS))
    if kind == 2:
        return json_source(draw(SIMPLE_TEXT))
    if kind == 3:
        return draw(st.sampled_from(["null", "true", "false", "[]", "{}"]))
    if kind == 4:
        return str(draw(st.integers(-(2**70), 2**70)))
    if kind == 5:
        return repr(draw(st.floats(allow_nan=False, allow_infinity=False)))
    return draw(st.sampled_from(["NaN", "Infinity", "-Infinity"]))  # not JSON: a bad record


def raw_value(depth: int = 2):
    """A JSON value as source text: scalars, and lists/objects of them down to `depth`."""
    if depth == 0:
        return raw_scalar()
    inner = raw_value(depth - 1)
    return st.one_of(
        raw_scalar(),
        st.lists(inner, max_size=3).map(lambda xs: "[" + ",".join(xs) + "]"),
        st.dictionaries(st.sampled_from(["a", "text", "role", "content", "x"]), inner, max_size=3).map(
            lambda d: "{" + ",".join(f"{json_source(k)}:{v}" for k, v in d.items()) + "}"
        ),
    )


@st.composite
def message(draw) -> str:
    """A chat message, often wrong: bad roles, non-string content, parts, extra keys."""
    fields = {}
    if draw(st.booleans()):
        fields["role"] = draw(
            st.one_of(
                st.sampled_from(['"user"', '"assistant"', '"system"', '"tool"', '""', '"bogus\\u0000"', "null", "5"]),
                raw_scalar(),
            )
        )
    if draw(st.integers(0, 4)):
        fields["content"] = draw(
            st.one_of(
                raw_value(1),
                st.just('[{"type":"text","text":"hi"},{"type":"image_url","image_url":{"url":"x"}}]'),
                st.just('[{"type":"text","text":5}]'),
            )
        )
    if draw(st.booleans()):
        fields["name"] = draw(raw_scalar())
    body = ",".join(f"{json_source(k)}:{v}" for k, v in fields.items())
    return "{" + body + "}"


# Field names the three commands read by default.
FIELDS = ["id", "text", "messages", "context", "query", "question", "original", "compressed", "documents"]


@st.composite
def record_object(draw) -> str:
    """A JSON object line shaped like a record of count, compress or validate, with hostile values."""
    fields: dict[str, str] = {}
    for name in draw(st.lists(st.sampled_from(FIELDS), unique=True, min_size=1, max_size=5)):
        if name == "messages":
            fields[name] = draw(
                st.one_of(st.lists(message(), max_size=3).map(lambda m: "[" + ",".join(m) + "]"), raw_scalar())
            )
        elif name in ("context", "documents"):
            fields[name] = draw(
                st.one_of(
                    raw_value(2),
                    st.lists(
                        st.one_of(raw_scalar(), st.just('{"title":"T","text":"Body text here."}')), max_size=4
                    ).map(lambda xs: "[" + ",".join(xs) + "]"),
                    st.just('"first sentence here. second one there. a third about cats."'),
                )
            )
        else:
            fields[name] = draw(raw_value(2 if name == "id" else 1))
    items = [f"{json_source(k)}:{v}" for k, v in fields.items()]
    if draw(st.integers(0, 5)) == 0:  # a key given twice (orjson keeps the last)
        items.append(f'{json_source(draw(st.sampled_from(FIELDS)))}:"dup"')
    return "{" + ",".join(items) + "}"


@st.composite
def record_line(draw) -> bytes:
    """One line of a hostile JSONL file, without its line end."""
    kind = draw(st.integers(0, 9))
    if kind <= 5:
        line = draw(record_object()).encode("utf-8", "surrogatepass")
    elif kind == 6:  # a bare JSON value: a string counts as text, anything else is a bad record
        line = draw(raw_value(1)).encode("utf-8", "surrogatepass")
    elif kind == 7:  # truncated or otherwise broken JSON
        obj = draw(record_object()).encode("utf-8", "surrogatepass")
        line = obj[: draw(st.integers(0, max(0, len(obj) - 1)))]
    elif kind == 8:  # raw bytes: invalid UTF-8, NUL, lone CR
        line = draw(st.binary(max_size=30)).replace(b"\n", b"")
    else:  # a valid record with bytes spliced into its text
        junk = draw(st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\x00", b"\r", b"\xef\xbb\xbf", b"\x80abc"]))
        line = b'{"id": 1, "text": "before ' + junk + b' after", "original": "a", "compressed": "b"}'
    prefix = draw(st.sampled_from([b"", b"", b"", b"\xef\xbb\xbf", b"  ", b"\t"]))
    return prefix + line


@st.composite
def jsonl_file(draw) -> bytes:
    """A whole hostile JSONL file: records, blank lines, CRLF and LF, maybe no final newline."""
    lines = draw(st.lists(st.one_of(record_line(), st.sampled_from([b"", b"   ", b"\r"])), min_size=5, max_size=25))
    ends = draw(st.lists(st.sampled_from([b"\n", b"\r\n"]), min_size=len(lines), max_size=len(lines)))
    body = b"".join(line + end for line, end in zip(lines, ends, strict=True))
    if draw(st.booleans()):
        body = body.rstrip(b"\r\n")
    if draw(st.integers(0, 4)) == 0:
        body = b"\xef\xbb\xbf" + body
    return body


# --- option values ------------------------------------------------------------------------------

NUMBER_SPELLINGS = [
    "0",
    "-0",
    "1",
    "-1",
    "0.5",
    "nan",
    "NaN",
    "inf",
    "-inf",
    "Infinity",
    "1e309",
    "-1e309",
    "1e-320",
    "99999999999999999999999999",
    "-99999999999999999999999999",
    "9223372036854775808",
    "0x10",
    "1_000",
    "１２",  # fullwidth digits: int() takes them
    "٣",  # Arabic-Indic three
    "",
    " ",
    "1.0.0",
    "\x01",
    "\u202e1",
    "--",
    "-",
]

WORD_SPELLINGS = ["", " ", "auto", "AUTO", "none", "\x7f", "\u202e", "x" * 600, "é", "../..", "-", "--help"]


# An argument cannot hold NUL (execve's strings end there).
ARG_TEXT = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"], exclude_characters="\x00"), max_size=20
)


def option_value():
    return st.one_of(st.sampled_from(NUMBER_SPELLINGS), st.sampled_from(WORD_SPELLINGS), ARG_TEXT)


# (command, option) pairs that take a value; fuzzed with option_value().
VALUE_OPTIONS = {
    "count": [
        "--max-tokens",
        "--timeout",
        "--retries",
        "--jobs",
        "--format",
        "--on-error",
        "--engine",
        "--encoding",
        "--field",
        "--id-field",
        "--input-format",
        "--add-field",
        "--cache",
        "--model",
        "-m",
        "-j",
        "-f",
        "--ray-workers",
    ],
    "compress": [
        "--budget",
        "--ratio",
        "--target-compression",
        "--min-quality",
        "--method",
        "--format",
        "--on-error",
        "--jobs",
        "--gap-marker",
        "--context-field",
        "--query-field",
        "--query",
        "--device",
        "--engine",
        "--model",
    ],
    "validate": [
        "--min-rouge-l",
        "--max-ratio",
        "--min-bertscore",
        "--metrics",
        "--fail-on",
        "--format",
        "--on-error",
        "--align",
        "--original-field",
        "--compressed-field",
        "--jobs",
        "--model",
    ],
}

# Flags the commands do not have (typos, wrong command's flags, wrong dash count).
BAD_FLAGS = [
    "--budgett",
    "--max_tokens",
    "-max-tokens",
    "---format",
    "--Format",
    "--budget=",
    "--=",
    "-Z",
    "--ray-adress",
]


@st.composite
def argv(draw) -> list[str]:
    """A command and a few options, each with a fuzzed value (and now and then a bad flag)."""
    command = draw(st.sampled_from(sorted(VALUE_OPTIONS)))
    args = [command]
    for option in draw(st.lists(st.sampled_from(VALUE_OPTIONS[command]), min_size=1, max_size=3)):
        value = draw(option_value())
        args += [f"{option}={value}"] if draw(st.booleans()) else [option, value]
    if draw(st.integers(0, 3)) == 0:
        args.append(draw(st.sampled_from(BAD_FLAGS)))
    return args


# --- damage to a file ---------------------------------------------------------------------------


class Damaged:
    """Damaged bytes, and what was done to them (its repr: the damage, not megabytes of data)."""

    def __init__(self, how: str, data: bytes):
        self.how, self.data = how, data

    def __repr__(self) -> str:
        return f"Damaged({self.how}, {len(self.data)} bytes)"


@st.composite
def damage(draw, data: bytes) -> Damaged:
    """A damaged copy of `data`: cut short, bytes flipped, a run overwritten, or garbage appended."""
    kind = draw(st.sampled_from(["truncate", "flip", "overwrite", "append", "empty"]))
    n = len(data)
    if kind == "empty":
        return Damaged(kind, b"")
    if kind == "truncate":
        at = draw(st.integers(0, n - 1))
        return Damaged(f"truncate at {at}", data[:at])
    if kind == "append":
        junk = draw(st.binary(min_size=1, max_size=64))
        return Damaged(f"append {junk!r}", data + junk)
    buf = bytearray(data)
    if kind == "flip":
        flips = [(draw(st.integers(0, n - 1)), draw(st.integers(0, 7))) for _ in range(draw(st.integers(1, 8)))]
        for i, bit in flips:
            buf[i] ^= 1 << bit
        return Damaged(f"flip (byte, bit) {flips}", bytes(buf))
    start = draw(st.integers(0, n - 1))
    junk = draw(st.binary(min_size=1, max_size=64))
    buf[start : start + len(junk)] = junk
    return Damaged(f"overwrite at {start} with {junk!r}", bytes(buf))
