"""Near-duplicate units, by MinHash over word 3-shingles with banded LSH.

The permutations are datasketch's own (drawn as `datasketch.MinHash` draws its classic-scheme
ones from the same seed), the band split is what `datasketch.MinHashLSH` chooses for the
threshold, and the signatures are what `MinHash.update_batch` would give with the same hash
function (tests check all three), but computed for all units of a context in a few vectorised
steps: datasketch's per-object path costs ~50 ms for a 250-sentence context, this ~1 ms. For
the default threshold datasketch is not imported at all (it imports SciPy: ~60 MB and ~0.3 s).
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
CHUNK = 1 << 14  # shingles permuted at a time: a (CHUNK, num_perm) uint64 block is 8 MB


def crc32(data: bytes) -> int:
    return zlib.crc32(data)


def legacy_minhash(cls, num_perm: int = NUM_PERM, seed: int = SEED):
    """datasketch's MinHash with the classic (a*h + b mod 2^61-1) permutations: datasketch 2 made
    a 32-bit affine scheme the default and names the classic one "legacy"."""
    try:
        return cls(num_perm=num_perm, seed=seed, hashfunc=crc32, scheme="legacy")
    except TypeError:  # datasketch 1.x: legacy is the only scheme
        return cls(num_perm=num_perm, seed=seed, hashfunc=crc32)


# datasketch.lsh._optimal_param(threshold, num_perm, 0.5, 0.5): (bands, rows), precomputed
_BANDS = {(THRESHOLD, NUM_PERM): (5, 11)}


def _permutations(num_perm: int, seed: int) -> np.ndarray:
    """(a, b) of datasketch's classic-scheme permutations (MinHash._init_permutations)."""
    gen = np.random.RandomState(seed)
    pairs = [
        (gen.randint(1, _MERSENNE, dtype=np.uint64), gen.randint(0, _MERSENNE, dtype=np.uint64))
        for _ in range(num_perm)
    ]
    return np.array(pairs, dtype=np.uint64).T


@functools.lru_cache(maxsize=4)
def _params(num_perm: int, seed: int, threshold: float):
    a, b = _permutations(num_perm, seed)
    split = _BANDS.get((threshold, num_perm))
    if split is None:
        try:
            from datasketch.lsh import _optimal_param
        except ImportError:
            from ..errors import UsageError

            raise UsageError("near-duplicate removal needs datasketch (pip install datasketch)") from None
        split = _optimal_param(threshold, num_perm, 0.5, 0.5)
    bands, rows = split
    return a, b, bands, rows


def shingles(text: str, k: int = 3) -> list[bytes]:
    words = _WORD.findall(text.lower())
    if len(words) <= k:
        return [" ".join(words).encode()]
    return [" ".join(words[i : i + k]).encode() for i in range(len(words) - k + 1)]


def signatures(texts: list[str], num_perm: int = NUM_PERM, seed: int = SEED) -> np.ndarray:
    """(n, num_perm) MinHash signatures, equal to datasketch's MinHash(num_perm, seed, crc32)
    (whose values are below 2**32: held as uint32, half the memory).

    Units are hashed about CHUNK shingles at a time and their permuted hashes taken CHUNK rows
    at a time (a unit that spans blocks gets the minimum over its pieces: the same numbers), so
    memory is the signatures, not a (shingles, num_perm) matrix for the whole context."""
    a, b, _, _ = _params(num_perm, seed, THRESHOLD)
    out = np.empty((len(texts), num_perm), dtype=np.uint32)
    first = 0
    while first < len(texts):
        group: list[list[bytes]] = []
        size = 0
        while first + len(group) < len(texts) and size < CHUNK:
            group.append(shingles(texts[first + len(group)]))
            size += len(group[-1])
        counts = np.array([len(sh) for sh in group], dtype=np.int64)
        hv = np.fromiter(map(zlib.crc32, itertools.chain.from_iterable(group)), dtype=np.uint64, count=size)
        del group
        _minhash_into(out[first : first + len(counts)], hv, np.cumsum(counts) - counts, a, b)
        first += len(counts)
    return out


def _minhash_into(out: np.ndarray, hv: np.ndarray, starts: np.ndarray, a: np.ndarray, b: np.ndarray) -> None:
    """Signature rows of consecutive units into `out`, from their shingle hashes `hv` (unit k's
    from starts[k]; every unit has at least one)."""
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
        out[first] = np.minimum(out[first], seg[0]) if carried else seg[0]
        out[first + 1 : end] = seg[1:]


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
        firsts[band] = _first_equal(sig[:, band * rows : (band + 1) * rows])
    out: list[int | None] = [None] * n
    for i in np.flatnonzero((firsts != np.arange(n)).any(axis=0)).tolist():
        for j in sorted({int(j) for j in firsts[:, i]} - {i}):
            if float(np.mean(sig[i] == sig[j])) >= threshold:
                out[i] = j
                break
    return out


def _first_equal(rows: np.ndarray) -> np.ndarray:
    """For each row, the index of the first row equal to it (itself if none is earlier)."""
    rows = np.ascontiguousarray(rows)
    keys = rows.view(np.dtype((np.void, rows.dtype.itemsize * rows.shape[1]))).ravel()
    order = np.argsort(keys, kind="stable")  # equal rows together, each run in index order
    del keys
    ordered = rows[order]
    new = np.empty(len(order), dtype=bool)
    new[0] = True
    np.any(ordered[1:] != ordered[:-1], axis=1, out=new[1:])
    del ordered
    starts = np.flatnonzero(new)
    out = np.empty(len(order), dtype=np.int64)
    out[order] = np.repeat(order[starts], np.diff(starts, append=len(order)))
    return out
