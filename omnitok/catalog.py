"""What omnitok knows, as data: every model family with its ids, patterns and strategy chain, the
tokenizer files present on this host, and how one Counter's model resolved (`omnitok models`)."""

from __future__ import annotations


def model_families() -> list[dict]:
    """Every family in resolution order: name, order, strategy chain, and its id rows."""
    from .families import families

    return [{"family": f.name, "order": f.order, "chain": f.chain, "models": f.rows()} for f in families()]


def asset_rows() -> list[dict]:
    """What is present locally: embedded and stored OpenAI vocabularies, Gemma, HF cache models."""
    from .assets.hf import has_tokenizer, hf_cache_dir
    from .assets.store import tiktoken_candidates
    from .families.gemini import SENTENCEPIECE, spm_candidates
    from .tokenizers.openai_encodings import ENCODINGS

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
    from .families import family

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
