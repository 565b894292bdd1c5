"""The float16 scan plus float32 rescoring returns exactly what float32 search would."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import sqlite_utils

from bastion.store.db import open_library_db
from bastion.store.vector_index import VectorIndex, rescore, shortlist, top_k, vector_to_blob

DIM = 32


def _store(path: Path, vectors: np.ndarray, *, docs_unavailable: frozenset[int] = frozenset()) -> sqlite_utils.Database:
    """A library.db with one collection, one chunk per document, one vector per chunk."""
    db = open_library_db(path)
    db.execute(
        "INSERT INTO collections (name, embedder_id, dimension, chunker_version, created) "
        "VALUES ('c', 'test', ?, 1, ?)",
        [DIM, time.time()],
    )
    db.execute("INSERT INTO folders (collection_id, root, root_bytes) VALUES (1, '/r', x'2f')")
    with db.atomic():
        for i, vector in enumerate(vectors, start=1):
            state = "unavailable" if i in docs_unavailable else "indexed"
            db.execute(
                "INSERT INTO documents (id, collection_id, folder_id, path, path_bytes, state, "
                "chunk_count, updated_at) VALUES (?, 1, 1, ?, ?, ?, 1, 0)",
                [i, f"/r/{i}.txt", f"{i}".encode(), state],
            )
            db.execute(
                "INSERT INTO chunks (id, document_id, ordinal, text, page, char_start, char_end) "
                "VALUES (?, ?, 0, 'x', NULL, 0, 1)",
                [i, i],
            )
            db.execute("INSERT INTO embeddings (chunk_id, vector) VALUES (?, ?)", [i, vector_to_blob(vector)])
    return db


def _unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def _search(db: sqlite_utils.Database, index: VectorIndex, query: np.ndarray, k: int, generation: int = 0) -> list[tuple[int, float]]:
    matrix = index.matrix(db, 1, generation, DIM)
    return rescore(db, shortlist(matrix, query, k), query, k)


def test_matches_float32_search_even_where_float16_cannot_separate(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    query = _unit(rng.standard_normal((1, DIM)))[0]
    # 400 near-duplicates of one direction: their cosines differ by less than float16 resolves,
    # so the float16 order among them is arbitrary; the exact rescoring must restore it.
    close = _unit(query + rng.standard_normal((400, DIM)).astype(np.float32) * 2e-3)
    far = _unit(rng.standard_normal((3000, DIM)))
    vectors = np.concatenate([far[:1500], close, far[1500:]])
    db = _store(tmp_path / "l.db", vectors)
    ids = np.arange(1, len(vectors) + 1, dtype=np.int64)
    index = VectorIndex()
    for k in (1, 10, 50):
        expected = top_k(ids, vectors, query, k)
        got = _search(db, index, query, k)
        assert [g[0] for g in got] == [e[0] for e in expected]
        assert [g[1] for g in got] == pytest.approx([e[1] for e in expected], abs=1e-6)
    db.close()


def test_random_queries_agree_with_float32(tmp_path: Path) -> None:
    rng = np.random.default_rng(11)
    vectors = _unit(rng.standard_normal((2000, DIM)))
    db = _store(tmp_path / "l.db", vectors)
    ids = np.arange(1, 2001, dtype=np.int64)
    index = VectorIndex()
    for query in _unit(rng.standard_normal((20, DIM))):
        assert [g[0] for g in _search(db, index, query, 50)] == [e[0] for e in top_k(ids, vectors, query, 50)]
    db.close()


def test_unavailable_documents_are_not_scanned_and_generation_reloads(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    vectors = _unit(rng.standard_normal((50, DIM)))
    db = _store(tmp_path / "l.db", vectors, docs_unavailable=frozenset({1}))
    index = VectorIndex()
    first = index.matrix(db, 1, 0, DIM)
    assert 1 not in first.ids and len(first.ids) == 49
    assert tuple(first.vectors.shape) == (49, DIM)
    assert index.matrix(db, 1, 0, DIM) is first  # cached
    db.execute("UPDATE documents SET state = 'indexed' WHERE id = 1")
    assert index.matrix(db, 1, 0, DIM) is first  # same generation: still the cached matrix
    reloaded = index.matrix(db, 1, 1, DIM)
    assert reloaded is not first and 1 in reloaded.ids
    # The exact query vector of document 1 finds it first, with cosine 1.
    assert _search(db, index, vectors[0], 1, generation=1)[0] == (1, pytest.approx(1.0, abs=1e-6))
    db.close()


def test_rescore_leaves_out_chunks_deleted_since_the_scan(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    vectors = _unit(rng.standard_normal((30, DIM)))
    db = _store(tmp_path / "l.db", vectors)
    index = VectorIndex()
    ids = shortlist(index.matrix(db, 1, 0, DIM), vectors[4], 3)
    assert 5 in ids
    db.execute("DELETE FROM embeddings WHERE chunk_id = 5")
    assert 5 not in [cid for cid, _ in rescore(db, ids, vectors[4], 3)]
    db.close()


def test_empty_collection_and_k_zero(tmp_path: Path) -> None:
    db = _store(tmp_path / "l.db", np.zeros((0, DIM), dtype=np.float32))
    index = VectorIndex()
    matrix = index.matrix(db, 1, 0, DIM)
    query = np.ones(DIM, dtype=np.float32) / np.sqrt(DIM)
    assert len(shortlist(matrix, query, 10)) == 0
    assert rescore(db, [], query, 10) == []
    assert top_k(np.zeros(0, dtype=np.int64), np.zeros((0, DIM), np.float32), query, 5) == []
    db.close()
