"""Near-duplicate units, by MinHash over word 3-shingles with banded LSH.

The permutations are datasketch's own (a `datasketch.MinHash` with the same seed and its classic
scheme provides them),
and the signatures are what `MinHash.update_batch` would give with the same hash function (a
test checks it), but computed for all units of a context in one vectorised step: datasketch's
per-object path costs ~50 ms for a 250-sentence context, this ~1 ms.
"""

from __future__ import annotations

import functools
import itertools
import re
import zlib

import numpy as np

NUM_PERM = 64
SEED = 1
THRESHOLD = 0.8
_MERSENNE = np.uint64((1 << 61) - 1)
_MAX_HASH = np.uint64((1 << 32) - 1)
_WORD = re.compile(r"\w+")


def crc32(data: bytes) -> int:
    return zlib.crc32(data)


def legacy_minhash(cls, num_perm: int = NUM_PERM, seed: int = SEED):
    """datasketch's MinHash with the classic (a*h + b mod 2^61-1) permutations: datasketch 2 made
    a 32-bit affine scheme the default and names the classic one "legacy"."""
    try:
        return cls(num_perm=num_perm, seed=seed, hashfunc=crc32, scheme="legacy")
    except TypeError:  # datasketch 1.x: legacy is the only scheme
        return cls(num_perm=num_perm, seed=seed, hashfunc=crc32)


@functools.lru_cache(maxsize=4)
def _params(num_perm: int, seed: int, threshold: float):
    try:
        from datasketch import MinHash
        from datasketch.lsh import _optimal_param
    except ImportError:
        from ..errors import UsageError

        raise UsageError("near-duplicate removal needs datasketch (pip install datasketch)") from None
    a, b = legacy_minhash(MinHash, num_perm, seed).permutations
    bands, rows = _optimal_param(threshold, num_perm, 0.5, 0.5)
    return a, b, bands, rows


def shingles(text: str, k: int = 3) -> list[bytes]:
    words = _WORD.findall(text.lower())
    if len(words) <= k:
        return [" ".join(words).encode()]
    return [" ".join(words[i : i + k]).encode() for i in range(len(words) - k + 1)]


def signatures(texts: list[str], num_perm: int = NUM_PERM, seed: int = SEED) -> np.ndarray:
    """(n, num_perm) MinHash signatures, equal to datasketch's MinHash(num_perm, seed, crc32)."""
    a, b, _, _ = _params(num_perm, seed, THRESHOLD)
    sh = [shingles(t) for t in texts]
    counts = np.array([len(s) for s in sh])
    hv = np.fromiter(map(zlib.crc32, itertools.chain.from_iterable(sh)), dtype=np.uint64, count=int(counts.sum()))
    with np.errstate(over="ignore"):
        phv = ((hv[:, None] * a + b) % _MERSENNE) & _MAX_HASH
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    return np.minimum.reduceat(phv, starts, axis=0)


def near_duplicates(texts: list[str], threshold: float = THRESHOLD) -> list[int | None]:
    """For each text, the index of an earlier text it nearly duplicates (estimated Jaccard of
    word 3-shingles >= threshold), else None."""
    if len(texts) < 2:
        return [None] * len(texts)
    _, _, bands, rows = _params(NUM_PERM, SEED, threshold)
    sig = signatures(texts)
    buckets: dict[bytes, int] = {}
    out: list[int | None] = [None] * len(texts)
    for i in range(len(texts)):
        candidates = set()
        for band in range(bands):
            key = band.to_bytes(2, "little") + sig[i, band * rows : (band + 1) * rows].tobytes()
            j = buckets.setdefault(key, i)
            if j != i:
                candidates.add(j)
        for j in sorted(candidates):
            if float(np.mean(sig[i] == sig[j])) >= threshold:
                out[i] = j
                break
    return out
