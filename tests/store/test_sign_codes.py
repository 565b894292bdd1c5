"""Sign-bit codes: Hamming distances as counted by hand, and the nearest rows they pick."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bastion.store.sign_codes import build_codes, hamming, nearest_rows


@pytest.mark.parametrize("dimension", [8, 64, 100, 384])
def test_hamming_counts_the_dimensions_whose_signs_differ(dimension: int) -> None:
    rng = np.random.default_rng(dimension)
    rows = rng.standard_normal((300, dimension)).astype(np.float32)
    query = rng.standard_normal(dimension).astype(np.float32)
    codes = build_codes(torch.from_numpy(rows).half())
    assert codes.words.shape == ((dimension + 63) // 64, 300)
    expected = ((rows > 0) != (query > 0)).sum(axis=1)
    assert hamming(codes, query).tolist() == expected.tolist()
    # A row's own vector is at distance 0 from it.
    assert hamming(codes, rows[17])[17] == 0


def test_nearest_rows_are_the_smallest_distances_in_row_order() -> None:
    rng = np.random.default_rng(1)
    rows = rng.standard_normal((2000, 64)).astype(np.float32)
    query = rng.standard_normal(64).astype(np.float32)
    codes = build_codes(torch.from_numpy(rows).half())
    distances = hamming(codes, query)
    picked = nearest_rows(codes, query, 50)
    assert list(picked) == sorted(picked)
    cut = np.sort(distances)[49]
    # Every row nearer than the 50th distance is in; rows at the cut may be in; none beyond.
    assert set(np.flatnonzero(distances < cut)) <= set(picked)
    assert distances[picked].max() == cut
    assert 50 <= len(picked) <= 100


def test_nearest_rows_edge_counts() -> None:
    rows = np.random.default_rng(2).standard_normal((10, 16)).astype(np.float32)
    codes = build_codes(torch.from_numpy(rows).half())
    assert list(nearest_rows(codes, rows[0], 10)) == list(range(10))
    assert list(nearest_rows(codes, rows[0], 99)) == list(range(10))
    assert len(nearest_rows(codes, rows[0], 0)) == 0
    empty = build_codes(torch.zeros((0, 16), dtype=torch.float16))
    assert len(hamming(empty, rows[0])) == 0 and len(nearest_rows(empty, rows[0], 5)) == 0


def test_many_identical_rows_are_capped() -> None:
    # 1,000 copies of one vector tie at distance 0: the cut keeps at most twice the count asked.
    rows = np.repeat(np.random.default_rng(3).standard_normal((1, 32)).astype(np.float32), 1000, axis=0)
    codes = build_codes(torch.from_numpy(rows).half())
    assert len(nearest_rows(codes, rows[0], 20)) == 20
