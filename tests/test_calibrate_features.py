"""The calibrated Claude estimate's features and fit (omnitok.calibration, format version 3):
features computed by hand from the reference tokenizations (tiktoken), a fit that recovers
coefficients it was built from, and a calibration file of the earlier format refused in one line."""

from __future__ import annotations

import json
import random
import re
from bisect import bisect_right

import pytest

from omnitok import calibration

from .console import omnitok

MODEL = "claude-sonnet-4-5"
TEXTS = [
    "Hello, world! The year 2026 had 365 days.",
    "def f(x):\n    return {x: [1, 2]}  # code\n",
    "Привет, мир! Как дела?",
    "東京は日本の首都です。人口は約1400万人。",
    "한국어 텍스트입니다",
    "สวัสดีครับ ยินดีต้อนรับ",
    "مرحبا بالعالم",
    "नमस्ते दुनिया",
    "Emoji 🙂🚀 and ∑ symbols « » — done",
    "ამინდი კარგია",
    "   \n\n\t ",
    "",
]

_SPACES = "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f "


def char_class(cp: int) -> str:
    """CLASSES of one code point, as the module's docstring and RANGES define them."""
    if cp < 128:
        ch = chr(cp)
        if ch in "0123456789":
            return "digit"
        if ch in _SPACES:
            return "space"
        if ch.isalpha():
            return "latin"
        return "punct" if 32 < cp < 127 else "symbol"
    starts = [0, *(s for s, _ in calibration.RANGES)]
    names = ["symbol", *(c for _, c in calibration.RANGES)]
    return names[bisect_right(starts, cp) - 1]


def token_class(piece: bytes) -> str | None:
    """A token's class: its first character that is not a space (missing continuation bytes of a
    cut character read as 0x80); None: it starts inside a character."""
    s = piece.lstrip(b" ")
    if not s:
        return "space"
    lead = s[0]
    if lead < 0x80:
        return char_class(lead)
    if lead < 0xC0:
        return None
    size = 2 if lead < 0xE0 else 3 if lead < 0xF0 else 4
    cont = [(b & 0x3F) for b in (s[1:size] + b"\x80\x80\x80")[: size - 1]]
    cp = lead & (0x7F >> size)
    for c in cont:
        cp = (cp << 6) | c
    return char_class(min(cp, 0x10FFFF))


def by_hand_features(text: str, ref_o200k, ref_cl100k) -> tuple[list[float], dict[str, list[int]]]:
    """(the text's FEATURES, its ids per base) from tiktoken's tokenizations."""
    row: list[float] = []
    ids = {"o200k_base": ref_o200k.encode_ordinary(text), "cl100k_base": ref_cl100k.encode_ordinary(text)}
    for enc, toks in ((ref_o200k, ids["o200k_base"]), (ref_cl100k, ids["cl100k_base"])):
        counts = dict.fromkeys(calibration.CLASSES, 0)
        last = "symbol"
        for t in toks:
            k = token_class(enc.decode_single_token_bytes(t)) or last
            counts[k] += 1
            last = k
        row += [float(v) for v in counts.values()]
    chars = dict.fromkeys(calibration.CLASSES, 0)
    for ch in text:
        chars[char_class(ord(ch))] += 1
    row += [float(v) for v in chars.values()]
    row += [
        float(len(re.findall(f"[{re.escape(_SPACES)}]+", text))),  # white-space runs
        float(text.count("\n")),
        float(len(re.findall("[A-Za-z]+", text))),  # ASCII words
        float(len(re.findall("[^\x00-\x7f]+", text))),  # runs of non-ASCII characters
        float(sum(text.count(c) for c in ";{}()=[]_")),
        float(sum(text.count(c) for c in '<>|"')),
    ]
    for base, toks in ids.items():  # tokens by rank: from each edge up to the next
        edges = [*calibration.RANK_EDGES[base], 1 << 30]
        row += [float(sum(1 for t in toks if lo <= t < hi)) for lo, hi in zip(edges[:-1], edges[1:], strict=True)]
    row.append(1.0)
    return row, ids


def by_hand_estimate(estimator: dict, text: str, ref_o200k, ref_cl100k) -> int:
    """A calibration's estimate of `text` (its file's estimator) computed from the definition."""
    row, ids = by_hand_features(text, ref_o200k, ref_cl100k)
    value = sum(w * x for w, x in zip(estimator["weights"], row, strict=True))
    value += sum(estimator["token_deltas"][b].get(str(t), 0.0) for b, toks in ids.items() for t in toks)
    n = len(calibration.CLASSES)
    o, c = sum(row[:n]), sum(row[n : 2 * n])
    return max(1, round(min(max(value, 0.5 * min(o, c)), 2.0 * max(o, c))))


def test_features_are_the_reference_tokenizations_split_by_script(ref_o200k, ref_cl100k):
    x, ids, owner, strata = calibration.Featurizer().features(TEXTS)
    ranked = sum(len(e) for e in calibration.RANK_EDGES.values())
    assert len(calibration.FEATURES) == x.shape[1] == 3 * len(calibration.CLASSES) + 7 + ranked
    for i, text in enumerate(TEXTS):
        row, want_ids = by_hand_features(text, ref_o200k, ref_cl100k)
        assert x[i].tolist() == row, text
        mine = ids[owner == i].tolist()
        assert mine == want_ids["o200k_base"] + [calibration.key_of("cl100k_base", t) for t in want_ids["cl100k_base"]]
    f = dict(zip(calibration.FEATURES, x[2].tolist(), strict=True))
    assert (f["chars:cyrillic"], f["chars:punct"], f["chars:space"], f["chars:latin"]) == (16, 3, 3, 0)
    assert strata == [
        "numbers",
        "code",
        "cyrillic",
        "han",
        "hangul",
        "thai",
        "arabic",
        "indic",
        "prose",
        "georgian",
        "prose",
        "prose",
    ]


def test_a_token_cut_inside_a_character_counts_in_its_predecessors_class(ref_cl100k):
    # cl100k_base cuts Georgian into byte-level pieces: some of its tokens start inside a character
    text = TEXTS[9]
    pieces = [ref_cl100k.decode_single_token_bytes(t) for t in ref_cl100k.encode_ordinary(text)]
    assert any(0x80 <= p[0] < 0xC0 for p in pieces)
    x, _, _, _ = calibration.Featurizer().features([text])
    n = len(calibration.CLASSES)
    cl = dict(zip(calibration.CLASSES, x[0, n : 2 * n].tolist(), strict=True))
    assert cl["georgian"] + cl["space"] == len(pieces) and cl["georgian"] > 0


def test_the_fit_recovers_the_weights_a_count_was_made_from():
    rnd = random.Random(7)
    k = len(calibration.FEATURES)
    true_w = [rnd.uniform(0.0, 2.0) for _ in range(k)]
    rows = [[rnd.uniform(0.0, 50.0) for _ in range(k)] for _ in range(400)]
    ys = [sum(w * v for w, v in zip(true_w, r, strict=True)) for r in rows]
    import numpy as np

    none = np.zeros(0, np.int64)
    model = calibration.fit(np.array(rows), none, none, ys, ridge=1e-9, ridge_tokens=1.0)
    assert model.weights == pytest.approx(true_w, abs=1e-4) and model.deltas == {}


def test_the_fit_recovers_a_tokens_correction():
    # y = the o200k count, plus 2 for each token 1000, less 0.5 for each token 2000
    import numpy as np

    rnd = random.Random(3)
    n = len(calibration.CLASSES)
    rows, ids, owner, ys = [], [], [], []
    for i in range(300):
        toks = [rnd.choice([1000, 2000, 3000, 4000, 5000]) for _ in range(rnd.randint(20, 60))]
        row = [0.0] * len(calibration.FEATURES)
        row[0] = float(len(toks))  # all of them Latin
        row[-1] = 1.0
        rows.append(row)
        ids += toks
        owner += [i] * len(toks)
        ys.append(len(toks) + 2 * toks.count(1000) - 0.5 * toks.count(2000))
    model = calibration.fit(np.array(rows), np.array(ids), np.array(owner), ys, ridge=1e-9, ridge_tokens=1e-6)
    assert model.weights[0] + model.deltas.get(1000, 0) == pytest.approx(3.0, abs=2e-3)
    assert model.weights[0] + model.deltas.get(2000, 0) == pytest.approx(0.5, abs=2e-3)
    assert model.weights[0] + model.deltas.get(3000, 0) == pytest.approx(1.0, abs=2e-3)
    assert model.weights[n] == pytest.approx(0.0, abs=1e-6)  # cl100k: no texts, the prior


EARLIER = [
    {"format_version": 1, "estimator": {"kind": "linear-features-v1"}},
    {
        "format_version": 2,
        "provider": "anthropic",
        "created": "2026-12-01T00:00:00Z",
        "estimator": {"kind": "script-tokens-v2", "bases": ["o200k_base", "cl100k_base"], "features": []},
        "measured": {},
        "sample": {"texts": 200},
    },
]


@pytest.mark.parametrize("earlier", EARLIER, ids=lambda e: f"format-{e['format_version']}")
def test_a_calibration_of_an_earlier_format_is_refused_in_one_line(tmp_path, earlier):
    store = tmp_path / "assets" / "calibrations"
    store.mkdir(parents=True)
    version = earlier["format_version"]
    old = {"id": f"claude-sonnet-4-5-00000000000{version}", "format": "omnitok-calibration", "model": MODEL, **earlier}
    (store / f"{old['id']}.json").write_text(json.dumps(old))
    env = {"OMNITOK_HOME": str(tmp_path)}
    shown = omnitok("calibrate", "--show", old["id"], env=env)
    assert shown.code == 1 and shown.err.count("\n") == 1
    assert f"format_version {version}, an earlier omnitok's; run omnitok calibrate again" in shown.err
    c = omnitok("count", "-m", MODEL, "--text", "some words to count", "--format", "jsonl", env=env)
    assert c.code == 0 and json.loads(c.out)["encoding"] == "claude-3~o200k_base"
    assert "omnitok: warning:" in c.err and "run omnitok calibrate again" in c.err
