"""Exact vector search over a cached float32 matrix per collection.

A collection's vectors are loaded once into one contiguous matrix and reused until the
collection's ``generation`` changes (every swap or removal bumps it). Vectors are unit length, so
the dot product is the cosine similarity. DESIGN.md: exact search is fast enough to ~1M chunks;
go further (int8/ANN) only with a benchmark showing the gain and the recall kept.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import sqlite_utils
from numpy.typing import NDArray


@dataclass
class _Entry:
    generation: int
    ids: NDArray[np.int64]
    matrix: NDArray[np.float32]


def vectors_from_blobs(blobs: list[bytes], dimension: int) -> NDArray[np.float32]:
    """Stack little-endian float32 blobs into an ``(n, dimension)`` matrix."""
    if not blobs:
        return np.zeros((0, dimension), dtype=np.float32)
    flat = np.frombuffer(b"".join(blobs), dtype="<f4")
    return flat.reshape(len(blobs), dimension).astype(np.float32, copy=False)


def vector_to_blob(vector: NDArray[np.float32]) -> bytes:
    """A vector as a little-endian float32 blob (the on-disk format)."""
    return np.asarray(vector, dtype="<f4").tobytes()


class VectorIndex:
    """Per-collection matrices, cached by generation. Used from the thread that owns ``db``."""

    def __init__(self) -> None:
        self._cache: dict[int, _Entry] = {}

    def invalidate(self, collection_id: int | None = None) -> None:
        """Drop the cached matrix of one collection (or all)."""
        if collection_id is None:
            self._cache.clear()
        else:
            self._cache.pop(collection_id, None)

    def matrix(
        self, db: sqlite_utils.Database, collection_id: int, generation: int, dimension: int
    ) -> tuple[NDArray[np.int64], NDArray[np.float32]]:
        """The (chunk ids, vectors) of a collection's searchable documents, loaded if stale."""
        entry = self._cache.get(collection_id)
        if entry is None or entry.generation != generation:
            rows = db.execute(
                """
                SELECT e.chunk_id, e.vector FROM embeddings e
                JOIN chunks c ON c.id = e.chunk_id
                JOIN documents d ON d.id = c.document_id
                WHERE d.collection_id = ? AND d.state != 'unavailable'
                ORDER BY e.chunk_id
                """,
                [collection_id],
            ).fetchall()
            ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
            blobs = [r[1] for r in rows]
            del rows
            entry = _Entry(generation, ids, vectors_from_blobs(blobs, dimension))
            self._cache[collection_id] = entry
        return entry.ids, entry.matrix

    def search(
        self,
        db: sqlite_utils.Database,
        collection_id: int,
        generation: int,
        dimension: int,
        query: NDArray[np.float32],
        k: int,
    ) -> list[tuple[int, float]]:
        """The ``k`` chunks most similar to ``query``: (chunk id, cosine), best first."""
        ids, matrix = self.matrix(db, collection_id, generation, dimension)
        return top_k(ids, matrix, query, k)


def top_k(
    ids: NDArray[np.int64], matrix: NDArray[np.float32], query: NDArray[np.float32], k: int
) -> list[tuple[int, float]]:
    """Exact top-``k`` by dot product."""
    n = len(ids)
    if n == 0 or k <= 0:
        return []
    scores = matrix @ np.asarray(query, dtype=np.float32)
    part = np.argpartition(-scores, k - 1)[:k] if k < n else np.arange(n)
    order = part[np.argsort(-scores[part], kind="stable")]
    return [(int(ids[i]), float(scores[i])) for i in order]
