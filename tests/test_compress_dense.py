"""Dense relevance's arithmetic: the fast paths give the same numbers as the plain ones."""

import numpy as np

from omnitok.compression.score import passage_sums


def test_passage_sums_equal_add_at_bit_for_bit():
    rng = np.random.default_rng(0)
    for _ in range(100):
        n, p = int(rng.integers(1, 200)), int(rng.integers(1, 25))
        rows = rng.standard_normal((n, 16)).astype(np.float32)
        for owner in (np.sort(rng.integers(0, p, n)), rng.integers(0, p, n)):  # in passage order, and not
            want = np.zeros((p, 16))
            np.add.at(want, owner, rows)
            got = passage_sums(rows, owner, p)
            assert got.dtype == np.float64 and np.array_equal(got, want)
    assert passage_sums(np.zeros((0, 4), np.float32), np.zeros(0, int), 2).tolist() == [[0.0] * 4] * 2
