"""Sign-bit codes: the first pass of vector search over large collections.

A row's code holds one bit per dimension — the sign of the vector's component there — packed
into 64-bit words: 48 bytes for a 384-d vector, a sixteenth of its float16 row. The Hamming
distance between two codes estimates the angle between the vectors (random-hyperplane hashing), so
the rows nearest the query's code by Hamming distance are a shortlist that holds, with high
probability, the rows nearest by cosine; ``vector_index.shortlist`` then ranks that shortlist by
its float16 and float32 scores. Signs around the collection's mean vector were tried and held less
of the exact top 10 on MiniLM-like vectors (they measure the angle between centred vectors, which
is not the cosine being ranked), so the codes are plain signs.

The codes are stored word-major (word, row): each pass over the rows reads one contiguous array,
which numpy's ``bitwise_count`` turns into popcounts at memory speed (~10 ms for 1M rows on one
core of the reference machine; ``bench/vector_scale_bench.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

# Rows encoded at a time while building codes: bounds the float32 copy held at once.
_ENCODE_BATCH = 65_536


@dataclass(frozen=True)
class SignCodes:
    """Sign bits of a matrix's rows."""

    words: NDArray[np.uint64]  # (ceil(dimension / 64), rows), word-major

    @property
    def nbytes(self) -> int:
        return int(self.words.nbytes)


def build_codes(vectors: Any) -> SignCodes:
    """The codes of every row of ``vectors`` (a float16 torch matrix, as ``VectorIndex`` holds)."""
    n, dimension = (int(s) for s in vectors.shape)
    words = np.empty((_word_count(dimension), n), dtype=np.uint64)
    for start in range(0, n, _ENCODE_BATCH):
        rows = vectors[start:start + _ENCODE_BATCH].float().numpy()
        words[:, start:start + len(rows)] = encode(rows).T
    return SignCodes(words=words)


def hamming(codes: SignCodes, query: NDArray[np.float32]) -> NDArray[np.uint16]:
    """The Hamming distance from the query's code to every row's code."""
    q = encode(np.asarray(query, dtype=np.float32)[None, :])[0]
    n = codes.words.shape[1]
    distances = np.zeros(n, dtype=np.uint16)
    if n == 0:
        return distances
    flipped = np.empty(n, dtype=np.uint64)
    counts = np.empty(n, dtype=np.uint8)
    for word, row_words in zip(q, codes.words, strict=True):
        np.bitwise_xor(row_words, word, out=flipped)
        np.bitwise_count(flipped, out=counts)
        distances += counts
    return distances


def nearest_rows(codes: SignCodes, query: NDArray[np.float32], count: int) -> NDArray[np.int64]:
    """Rows whose codes are nearest the query's: the ``count`` nearest, ascending row order.

    Rows tied at the cut-off distance are all kept, up to twice ``count`` (past that, which only
    many identical vectors reach, the first ``count`` by distance).
    """
    distances = hamming(codes, query)
    n = len(distances)
    if count >= n:
        return np.arange(n, dtype=np.int64)
    if count <= 0:
        return np.zeros(0, dtype=np.int64)
    # Distances are small integers: a histogram finds the cut-off faster than a partition.
    cumulative = np.cumsum(np.bincount(distances))
    cut = int(np.searchsorted(cumulative, count))
    rows = np.flatnonzero(distances <= cut)
    if len(rows) > 2 * count:
        rows = np.sort(np.argpartition(distances, count)[:count])
    return rows.astype(np.int64, copy=False)


def _word_count(dimension: int) -> int:
    return (dimension + 63) // 64


def encode(rows: NDArray[np.float32]) -> NDArray[np.uint64]:
    """(m, words) codes of ``rows``: bit j of a row is set when its j-th component is positive."""
    m, dimension = rows.shape
    width = _word_count(dimension) * 64
    above = np.zeros((m, width), dtype=bool)  # padding bits stay 0 in every code
    above[:, :dimension] = rows > 0
    return np.packbits(above, axis=1, bitorder="little").view(np.uint64)
