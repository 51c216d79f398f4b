"""Calibrate the heuristic (omnitok/heuristic.py) against real tokenizers, and measure its error.

Text: English Wikipedia prose (../shared/data/nq-open-oracle.jsonl.gz passages), Python source
(this interpreter's standard library), CJK (CPython's test/cjkencodings *-utf8.txt). Items with an
even index calibrate; odd ones are held out and measure the error (median and p95 absolute
percentage error). Writes omnitok/data/heuristic.json and benchmarks/CALIBRATION.md.

    .venv/bin/python -m benchmarks.calibrate

With --check (`make bench`'s "heuristic" step) nothing is written: the table goes to stdout with a
line saying whether the shipped omnitok/data/heuristic.json is this fit (the fit is deterministic:
exact counts of fixed texts), so the README's table comes from the last full `make bench`.
"""

from __future__ import annotations

import gzip
import json
import os
import statistics
import sys
import sysconfig
from pathlib import Path

import omnitok
from omnitok.families import heuristic

from .hf_refs import hf_reference_dirs

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
VERSION = 1


def prose_items(limit: int = 2000) -> list[str]:
    out = []
    with gzip.open(SHARED / "nq-open-oracle.jsonl.gz", "rt", encoding="utf-8") as f:
        for line in f:
            for ctx in json.loads(line)["ctxs"]:
                out.append(ctx["text"])
            if len(out) >= limit:
                break
    return out[:limit]


def code_items(limit: int = 2000) -> list[str]:
    out = []
    stdlib = sysconfig.get_paths()["stdlib"]
    for dirpath, dirnames, filenames in os.walk(stdlib):
        dirnames.sort()
        for name in sorted(filenames):
            if name.endswith(".py") and "test" not in dirpath:
                text = Path(dirpath, name).read_text(encoding="utf-8", errors="replace")
                out += [text[i : i + 1500] for i in range(0, min(len(text), 6000), 1500)]
                if len(out) >= limit:
                    return out[:limit]
    return out


def cjk_items() -> list[str]:
    d = Path(sysconfig.get_paths()["stdlib"]) / "test" / "cjkencodings"
    out = []
    for f in sorted(d.glob("*-utf8.txt")):
        text = f.read_text(encoding="utf-8")
        out += [p for p in text.split("\n\n") if len(heuristic._CJK.findall(p)) > 20]
    return out


def references() -> dict[str, object]:
    refs = {"openai-o200k": omnitok.Counter("gpt-4o"), "openai-cl100k": omnitok.Counter("gpt-4")}
    for family, (directory, model_id) in hf_reference_dirs().items():
        refs[family] = omnitok.Counter(model_id, tokenizer=str(directory), special_tokens=False)
    return refs


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if args not in ([], ["--check"]):
        sys.exit("usage: python -m benchmarks.calibrate [--check]")
    check = args == ["--check"]
    sets = {"prose": prose_items(), "code": code_items(), "cjk": cjk_items()}
    refs = references()
    families: dict[str, dict] = {}
    table = []
    for family, counter in refs.items():
        truth = {k: [r.tokens for r in counter.count_batch(v)] for k, v in sets.items()}
        cpt = {}
        for kind in ("prose", "code"):
            texts, counts = sets[kind][::2], truth[kind][::2]
            cpt[kind] = sum(len(t) for t in texts) / sum(counts)
        cjk_texts, cjk_counts = sets["cjk"][::2], truth["cjk"][::2]
        rest_tokens = sum((len(t) - len(heuristic._CJK.findall(t))) / cpt["prose"] for t in cjk_texts)
        cpt["cjk"] = sum(len(heuristic._CJK.findall(t)) for t in cjk_texts) / (sum(cjk_counts) - rest_tokens)
        errors_all = []
        row = {}
        for kind, texts in sets.items():
            held = [(t, n) for t, n in zip(texts[1::2], truth[kind][1::2], strict=True) if n]
            errs = [abs(heuristic.estimate(t, cpt) - n) / n for t, n in held]
            errors_all += errs
            row[kind] = (statistics.median(errs), _p95(errs), len(held))
        band = round(_p95(errors_all), 3)
        families[family] = {"cpt": {k: round(v, 4) for k, v in cpt.items()}, "error_band": band}
        table.append((family, cpt, row, band))
    generic = {k: statistics.median(f["cpt"][k] for f in families.values()) for k in ("prose", "code", "cjk")}
    g_errs = []
    for texts in sets.values():
        for counter in refs.values():
            for t, r in zip(texts[1::2], counter.count_batch(texts[1::2]), strict=True):
                if r.tokens:
                    g_errs.append(abs(heuristic.estimate(t, generic) - r.tokens) / r.tokens)
    families["generic"] = {"cpt": {k: round(v, 4) for k, v in generic.items()}, "error_band": round(_p95(g_errs), 3)}
    out = {"version": VERSION, "families": families, "note": "made by benchmarks/calibrate.py; see its docstring"}
    shipped_path = ROOT / "omnitok" / "data" / "heuristic.json"
    if not check:
        shipped_path.write_text(json.dumps(out, indent=2) + "\n")
    lines = [
        "## Heuristic calibration (held-out error)",
        "",
        f"Calibrated on even items, measured on odd ones: prose {len(sets['prose'])} Wikipedia passages, "
        f"code {len(sets['code'])} Python chunks, CJK {len(sets['cjk'])} paragraphs.",
        "",
        "| family | chars/token prose, code, CJK | prose median / p95 APE | code median / p95 | CJK median / p95 | error_band (p95, all) |",
        "|---|---|---|---|---|---:|",
    ]
    for family, cpt, row, band in table:
        cells = " | ".join(f"{row[k][0]:.1%} / {row[k][1]:.1%}" for k in ("prose", "code", "cjk"))
        lines.append(f"| {family} | {cpt['prose']:.2f}, {cpt['code']:.2f}, {cpt['cjk']:.2f} | {cells} | {band:.1%} |")
    lines.append(
        f"| generic (median figures, all references) | {generic['prose']:.2f}, {generic['code']:.2f}, "
        f"{generic['cjk']:.2f} | | | | {families['generic']['error_band']:.1%} |"
    )
    if check:
        shipped = json.loads(shipped_path.read_text())["families"]
        differ = sorted(f for f in set(shipped) | set(families) if shipped.get(f) != families.get(f))
        lines += [
            "",
            "The shipped constants (omnitok/data/heuristic.json): "
            + (
                "this fit."
                if not differ
                else f"NOT this fit ({', '.join(differ)} differ): run benchmarks/calibrate.py."
            ),
        ]
    text = "\n".join(lines) + "\n"
    if not check:
        (ROOT / "benchmarks" / "CALIBRATION.md").write_text(text)
    print(text)


def _p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]


if __name__ == "__main__":
    main()
