"""`omnitok models`: every family, its ids and patterns, strategy chain, local assets, exactness."""

from __future__ import annotations

import sys

import typer


def _asset_rows() -> list[dict]:
    """What is present locally: embedded and stored OpenAI vocabularies, Gemma, HF cache models."""
    from ..assets.hf import has_tokenizer, hf_cache_dir
    from ..assets.store import tiktoken_candidates
    from ..gemini import SENTENCEPIECE, spm_candidates
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
        "target": r.encoding,
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
    import orjson

    from ..families import families

    if model:
        from ..api import Counter

        counter = Counter(model, online=online)
        try:
            info = explain(counter)
        finally:
            counter.close()
        if json_out:
            sys.stdout.buffer.write(orjson.dumps(info) + b"\n")
        else:
            for k, v in info.items():
                print(f"{k + ':':12} {v}")
        return
    data = {
        "families": [{"family": f.name, "order": f.order, "chain": f.chain, "models": f.rows()} for f in families()],
        "assets": _asset_rows(),
    }
    if json_out:
        sys.stdout.buffer.write(orjson.dumps(data) + b"\n")
        return
    from rich.console import Console
    from rich.table import Table

    console = Console()
    for fam in data["families"]:
        table = Table(title=f"{fam['family']}: {fam['chain']}", title_justify="left")
        for col in ("model", "kind", "target", "error_band"):
            table.add_column(col)
        for row in fam["models"]:
            band = row.get("error_band")
            table.add_row(row["model"], row["kind"], str(row["target"]), "" if band is None else f"±{band:.0%}")
        console.print(table)
    table = Table(title="local assets", title_justify="left")
    for col in ("family", "asset", "present", "where"):
        table.add_column(col)
    for row in data["assets"]:
        table.add_row(row["family"], row["asset"], "yes" if row["present"] else "no", row["where"] or "")
    console.print(table)
