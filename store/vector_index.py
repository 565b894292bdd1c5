"""Vector search over a cached half-precision matrix per collection: exact, or from sign bits.

A collection's vectors are loaded once into one contiguous matrix and reused until the
collection's ``generation`` changes (every swap or removal bumps it). Vectors are unit length, so
the dot product is the cosine similarity.

The scan is bound by memory bandwidth, so the cached matrix is float16: half the bytes to read
per query (and half the memory held), multiplied by torch with float32 accumulation — ~1.7×
faster than a float32 product on the 2-core reference machine. Rounding the inputs and the
output to float16 moves a cosine of unit vectors by at most ~1e-3 (``HALF_ERROR`` doubles that),
so every row whose float16 score is within ``2 × HALF_ERROR`` of the k-th best is kept and
``rescore`` ranks that shortlist again with the float32 vectors stored in the database: the
result is the float32 ranking and cosines, ties included
(``tests/store/test_vector_index.py`` checks it on near-duplicates float16 cannot separate).

Past ``CODES_FROM`` rows the full float16 scan costs more than a search may (~90 ms at 1M rows on
the 2-core reference machine), so a collection that large also keeps sign-bit codes
(``sign_codes``, 48 bytes a row): their Hamming distances pick the ``first_pass(k, n)`` nearest rows,
and only those rows are scored in float16 and rescored in float32 as above. The result is exact
over that shortlist; ``bench/vector_scale_bench.py`` measures how much of the exact top 10 and top
50 it holds (recall) on MiniLM-like vectors. Below ``CODES_FROM`` the search stays exact.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import sqlite_utils
from numpy.typing import NDArray

from .sign_codes import SignCodes, build_codes, nearest_rows

# Bound on |float16 score - float32 cosine| for unit vectors: input rounding 2^-10 (both sides)
# plus output rounding 2^-12 is ~1.2e-3; measured at most 5e-4.
HALF_ERROR = 2e-3
# At most this many rows are rescored; only a pile of near-identical vectors reaches it, and then
# the hits are within 2 × HALF_ERROR of the exact ones.
SHORTLIST_CAP = 4096
# Rows converted to float16 at a time while loading: bounds the float32 copy held at once.
_LOAD_BATCH = 65_536
# Collections with at least this many rows search a sign-bit shortlist instead of every row.
CODES_FROM = 200_000
# Rows the sign-bit pass hands on: FIRST_PASS_PER_HIT per hit asked, and at least one in
# FIRST_PASS_SHARE of the rows (a bigger collection has more rows near the top to tell apart).
# Measured on MiniLM-like vectors at 1M rows, k = 50, recall@10 / @50 of exact search: 10,000
# rows 0.981 / 0.978, 20,000 rows 0.995 / 0.993, 30,000 rows 0.998 / 0.998.
FIRST_PASS_PER_HIT = 80
FIRST_PASS_SHARE = 50


def first_pass(k: int, rows: int) -> int:
    """How many rows the sign-bit pass keeps for a top-``k`` search among ``rows``."""
    return max(FIRST_PASS_PER_HIT * k, rows // FIRST_PASS_SHARE)


@dataclass(frozen=True)
class Matrix:
    """One collection's searchable vectors: chunk ids, a float16 ``torch`` matrix and, for a
    large collection, the rows' sign-bit codes."""

    generation: int
    ids: NDArray[np.int64]
    vectors: Any  # torch.Tensor (n, dimension), float16; torch is imported lazily
    codes: SignCodes | None = None

    @property
    def nbytes(self) -> int:
        """Memory held by the matrix, its ids and its codes."""
        codes = self.codes.nbytes if self.codes is not None else 0
        return int(self.ids.nbytes + self.vectors.element_size() * self.vectors.nelement() + codes)


def vectors_from_blobs(blobs: Sequence[bytes], dimension: int) -> NDArray[np.float32]:
    """Stack little-endian float32 blobs into an ``(n, dimension)`` matrix."""
    if not blobs:
        return np.zeros((0, dimension), dtype=np.float32)
    flat = np.frombuffer(bytearray().join(blobs), dtype="<f4")  # writable: torch may share it
    return flat.reshape(len(blobs), dimension).astype(np.float32, copy=False)


def vector_to_blob(vector: NDArray[np.float32]) -> bytes:
    """A vector as a little-endian float32 blob (the on-disk format)."""
    return np.asarray(vector, dtype="<f4").tobytes()


def half_matrix(batches: Iterable[NDArray[np.float32]], dimension: int) -> Any:
    """Concatenate float32 row batches into one float16 torch matrix."""
    import torch

    parts = [torch.from_numpy(np.ascontiguousarray(b, dtype=np.float32)).to(torch.float16) for b in batches]
    if not parts:
        return torch.zeros((0, dimension), dtype=torch.float16)
    return torch.cat(parts) if len(parts) > 1 else parts[0]


class VectorIndex:
    """Per-collection matrices, cached by generation. Used from the thread that owns ``db``;
    the ``Matrix`` it returns is immutable and may be scanned from any thread.

    Args:
        codes_from: Row count from which a collection also gets sign-bit codes (None:
            ``CODES_FROM``, read when the index is made, so tests can lower it).
    """

    def __init__(self, codes_from: int | None = None) -> None:
        self._cache: dict[int, Matrix] = {}
        self._codes_from = CODES_FROM if codes_from is None else codes_from

    def invalidate(self, collection_id: int | None = None) -> None:
        """Drop the cached matrix of one collection (or all)."""
        if collection_id is None:
            self._cache.clear()
        else:
            self._cache.pop(collection_id, None)

    def matrix(
        self, db: sqlite_utils.Database, collection_id: int, generation: int, dimension: int
    ) -> Matrix:
        """The searchable vectors of a collection (documents not unavailable), loaded if stale."""
        entry = self._cache.get(collection_id)
        if entry is None or entry.generation != generation:
            self._cache.pop(collection_id, None)  # let the stale matrix go before loading
            cursor = db.execute(
                """
                SELECT e.chunk_id, e.vector FROM embeddings e
                JOIN chunks c ON c.id = e.chunk_id
                JOIN documents d ON d.id = c.document_id
                WHERE d.collection_id = ? AND d.state != 'unavailable'
                ORDER BY e.chunk_id
                """,
                [collection_id],
            )
            id_parts: list[NDArray[np.int64]] = []

            def batches() -> Iterable[NDArray[np.float32]]:
                while rows := cursor.fetchmany(_LOAD_BATCH):
                    id_parts.append(np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows)))
                    yield vectors_from_blobs([r[1] for r in rows], dimension)

            vectors = half_matrix(batches(), dimension)
            ids = np.concatenate(id_parts) if id_parts else np.zeros(0, dtype=np.int64)
            codes = build_codes(vectors) if len(ids) >= self._codes_from else None
            entry = Matrix(generation, ids, vectors, codes)
            self._cache[collection_id] = entry
        return entry


def shortlist(matrix: Matrix, query: NDArray[np.float32], k: int) -> NDArray[np.int64]:
    """The chunk ids that can be in the float32 top ``k`` (any order; usually a few more than k).

    With codes, "the float32 top k of the sign-bit pass's rows"; without, of all rows.
    Pure computation on an immutable matrix: safe to run on a helper thread while the owner
    thread queries SQLite (both release the GIL).
    """
    import torch

    n = len(matrix.ids)
    if n == 0 or k <= 0:
        return np.zeros(0, dtype=np.int64)
    if n <= k:
        return matrix.ids.copy()
    q = torch.from_numpy(np.ascontiguousarray(query, dtype=np.float32)).to(torch.float16)
    with torch.inference_mode():
        if matrix.codes is not None and first_pass(k, n) < n:
            rows = nearest_rows(matrix.codes, query, first_pass(k, n))
            scores = torch.mv(matrix.vectors.index_select(0, torch.from_numpy(rows)), q).float()
            picked: NDArray[np.int64] = matrix.ids[rows[_within_half_error(scores, k)]]
        else:
            picked = matrix.ids[_within_half_error(torch.mv(matrix.vectors, q).float(), k)]
    return picked


def _within_half_error(scores: Any, k: int) -> NDArray[np.int64]:
    """Positions in float16 ``scores`` that can hold a float32 top-``k`` row."""
    import torch

    if len(scores) <= k:
        return np.arange(len(scores), dtype=np.int64)
    kth = torch.topk(scores, k, sorted=False).values.min()
    # A true top-k row scores at least (k-th float16 score - 2 × HALF_ERROR) in float16.
    rows = torch.nonzero(scores >= kth - 2 * HALF_ERROR).flatten()
    if len(rows) > SHORTLIST_CAP:
        rows = torch.topk(scores, SHORTLIST_CAP, sorted=False).indices
    positions: NDArray[np.int64] = rows.numpy().astype(np.int64, copy=False)
    return positions


def rescore(
    db: sqlite_utils.Database, chunk_ids: Sequence[int] | NDArray[np.int64],
    query: NDArray[np.float32], k: int,
) -> list[tuple[int, float]]:
    """The ``k`` best of ``chunk_ids`` by exact float32 cosine: (chunk id, cosine), best first.

    Chunks deleted since the shortlist was taken are left out. Ties go to the lower chunk id.
    """
    if len(chunk_ids) == 0 or k <= 0:
        return []
    ids = [int(i) for i in chunk_ids]
    rows = db.execute(
        f"SELECT chunk_id, vector FROM embeddings WHERE chunk_id IN ({','.join('?' * len(ids))})",
        ids,
    ).fetchall()
    if not rows:
        return []
    found = np.array([r[0] for r in rows], dtype=np.int64)
    vectors = vectors_from_blobs([r[1] for r in rows], len(query))
    return top_k(found, vectors, query, k)


def top_k(
    ids: NDArray[np.int64], matrix: NDArray[np.float32], query: NDArray[np.float32], k: int
) -> list[tuple[int, float]]:
    """Exact top-``k`` by float32 dot product; ties go to the lower id."""
    n = len(ids)
    if n == 0 or k <= 0:
        return []
    scores = matrix @ np.asarray(query, dtype=np.float32)
    order = np.lexsort((ids, -scores))[:k]
    return [(int(ids[i]), float(scores[i])) for i in order]
