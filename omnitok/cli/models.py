"""`omnitok models`: every family, its ids and patterns, strategy chain, local assets, exactness."""

from __future__ import annotations

import typer

from ._output import print_json, print_rows, wants_json


def _asset_rows() -> list[dict]:
    """What is present locally: embedded and stored OpenAI vocabularies, Gemma, HF cache models."""
    from ..assets.hf import has_tokenizer, hf_cache_dir
    from ..assets.store import tiktoken_candidates
    from ..families.gemini import SENTENCEPIECE, spm_candidates
    from ..tokenizers.openai_encodings import ENCODINGS

    rows = []
    for name, spec in ENCODINGS.items():
        found = next((where for p, where in tiktoken_candidates(spec.file, spec.url) if p.is_file()), None)
        rows.append({"family": "openai", "asset": name, "present": found is not None, "where": found})
    for name, vocab in SENTENCEPIECE.items():
        found = next((where for p, where in spm_candidates(vocab) if p.is_file()), None)
        rows.append({"family": "gemini", "asset": name, "present": found is not None, "where": found})
    cache = hf_cache_dir()
    if cache.is_dir():
        for repo in sorted(cache.glob("models--*")):
            snaps = [s for s in (repo / "snapshots").glob("*") if has_tokenizer(s)]
            if snaps:
                model_id = repo.name.removeprefix("models--").replace("--", "/", 1)
                rows.append({"family": "hf", "asset": model_id, "present": True, "where": "Hugging Face cache"})
    return rows


def explain(counter) -> dict:
    """How a counter's model resolved and which strategy counts it."""
    from ..families import family

    r, s = counter.resolution, counter.strategy
    return {
        "model": r.model,
        "family": r.family,
        "target": r.target,
        "reason": r.reason,
        "chain": family(r.family).chain,
        **counter.meta,
        "engine": s.engine,
        "source": s.source,
        "fingerprint": s.fingerprint,
    }


def models_cmd(
    model: str | None = typer.Argument(
        None, help="Resolve one model id and say how it would be counted.", show_default=False
    ),
    json_out: bool = typer.Option(False, "--json", help="JSON (one document) instead of tables."),
    online: bool | None = typer.Option(
        None, "--online/--offline", help="Explain the online step too.", show_default=False
    ),
) -> None:
    """List the model families, their ids and patterns, strategy chains and local assets, or explain one id."""

    from ..families import families

    if model:
        from ..api import Counter

        counter = Counter(model, online=online)
        try:
            info = explain(counter)
        finally:
            counter.close()
        if json_out:
            print_json(info)
        else:
            for k, v in info.items():
                print(f"{k + ':':12} {v}")
        return
    data = {
        "families": [{"family": f.name, "order": f.order, "chain": f.chain, "models": f.rows()} for f in families()],
        "assets": _asset_rows(),
    }
    if wants_json(json_out):
        print_json(data)
        return
    for fam in data["families"]:
        rows = [
            (r["model"], r["kind"], r["target"], None if r.get("error_band") is None else f"±{r['error_band']:.0%}")
            for r in fam["models"]
        ]
        print_rows(rows, ("model", "kind", "target", "error_band"), f"{fam['family']}: {fam['chain']}")
    assets = [(r["family"], r["asset"], "yes" if r["present"] else "no", r["where"]) for r in data["assets"]]
    print_rows(assets, ("family", "asset", "present", "where"), "local assets")
