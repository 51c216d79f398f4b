"""Near-duplicate units, by MinHash over word 3-shingles with banded LSH.

The permutations are datasketch's own (a `datasketch.MinHash` with the same seed and its classic
scheme provides them),
and the signatures are what `MinHash.update_batch` would give with the same hash function (a
test checks it), but computed for all units of a context in one vectorised step: datasketch's
per-object path costs ~50 ms for a 250-sentence context, this ~1 ms.
"""

from __future__ import annotations

import functools
import re
import zlib

import numpy as np

NUM_PERM = 64
SEED = 1
THRESHOLD = 0.8
_MERSENNE = np.uint64((1 << 61) - 1)
_MAX_HASH = np.uint64((1 << 32) - 1)
_WORD = re.compile(r"\w+")
CHUNK = 1 << 15  # shingles permuted at a time: a (CHUNK, num_perm) uint64 block is 16 MB


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
    """(n, num_perm) MinHash signatures, equal to datasketch's MinHash(num_perm, seed, crc32)
    (whose values are below 2**32: held as uint32, half the memory).

    Memory is the shingle hashes (8 bytes a shingle) and the signatures, not a (shingles,
    num_perm) matrix for the whole context: the permuted hashes are taken CHUNK shingles at a
    time, and a unit that spans chunks gets the minimum over its pieces (the same numbers)."""
    a, b, _, _ = _params(num_perm, seed, THRESHOLD)
    counts = np.zeros(len(texts), dtype=np.int64)

    def each_shingle():
        for i, t in enumerate(texts):
            sh = shingles(t)
            counts[i] = len(sh)
            yield from sh

    hv = np.fromiter(map(zlib.crc32, each_shingle()), dtype=np.uint64)
    starts = np.cumsum(counts) - counts  # every unit has at least one shingle
    out = np.empty((len(texts), num_perm), dtype=np.uint32)
    for s in range(0, len(hv), CHUNK):
        block = hv[s : s + CHUNK]
        first = int(np.searchsorted(starts, s, "right")) - 1  # the unit that row s belongs to
        end = int(np.searchsorted(starts, s + len(block), "left"))  # units first..end-1 meet the block
        local = starts[first:end] - s
        carried = local[0] < 0  # the first unit began in an earlier block
        local[0] = 0
        with np.errstate(over="ignore"):
            phv = block[:, None] * a
            phv += b
            phv %= _MERSENNE
            phv &= _MAX_HASH
        seg = np.minimum.reduceat(phv, local, axis=0)
        if carried:
            out[first] = np.minimum(out[first], seg[0])
        else:
            out[first] = seg[0]
        out[first + 1 : end] = seg[1:]
    return out


def near_duplicates(texts: list[str], threshold: float = THRESHOLD) -> list[int | None]:
    """For each text, the index of an earlier text it nearly duplicates (estimated Jaccard of
    word 3-shingles >= threshold), else None.

    Banded LSH: in each band, a text's candidate is the first text whose band equals its own
    (found by sorting the band's rows, not by a dict of every band key); candidates are checked
    lowest index first."""
    n = len(texts)
    if n < 2:
        return [None] * n
    _, _, bands, rows = _params(NUM_PERM, SEED, threshold)
    sig = signatures(texts)
    firsts = np.empty((bands, n), dtype=np.int64)
    for band in range(bands):
        key = np.ascontiguousarray(sig[:, band * rows : (band + 1) * rows])
        key = key.view(np.dtype((np.void, key.dtype.itemsize * rows))).ravel()
        _, first, inverse = np.unique(key, return_index=True, return_inverse=True)
        firsts[band] = first[inverse.ravel()]
    out: list[int | None] = [None] * n
    for i in np.flatnonzero((firsts != np.arange(n)).any(axis=0)).tolist():
        for j in sorted({int(j) for j in firsts[:, i]} - {i}):
            if float(np.mean(sig[i] == sig[j])) >= threshold:
                out[i] = j
                break
    return out
