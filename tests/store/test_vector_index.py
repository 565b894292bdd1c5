"""The float16 scan plus float32 rescoring returns exactly what float32 search would; the sign-bit
first pass of large collections keeps recall, filters and deletions."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import sqlite_utils

from bastion.store import vector_index
from bastion.store.db import open_library_db
from bastion.store.library import Library
from bastion.store.vector_index import (
    VectorIndex,
    first_pass,
    rescore,
    shortlist,
    top_k,
    vector_to_blob,
)

from .fakes import CountingParser, HashingEmbedder, drain

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


# ---- sign-bit first pass (large collections) ---------------------------------------------------


def _clustered(rng: np.random.Generator, n: int, dimension: int, clusters: int) -> np.ndarray:
    """Unit vectors around a few centres (like chunks of related documents), not uniform."""
    centres = _unit(rng.standard_normal((clusters, dimension)))
    return _unit(centres[rng.integers(0, clusters, n)] + 0.6 * _unit(rng.standard_normal((n, dimension))))


def test_sign_bit_pass_keeps_recall_and_exact_scores(tmp_path: Path) -> None:
    rng = np.random.default_rng(21)
    dimension = 128
    vectors = _clustered(rng, 20_000, dimension, 100)
    db = _store(tmp_path / "l.db", vectors)
    ids = np.arange(1, len(vectors) + 1, dtype=np.int64)
    matrix = VectorIndex(codes_from=0).matrix(db, 1, 0, dimension)
    assert matrix.codes is not None and matrix.codes.words.shape == (2, len(vectors))
    assert first_pass(10, len(vectors)) < len(vectors)  # the pass really narrows the rows
    found = 0
    queries = _unit(vectors[rng.integers(0, len(vectors), 30)] + 0.3 * _unit(rng.standard_normal((30, dimension))))
    for query in queries:
        got = rescore(db, shortlist(matrix, query, 10), query, 10)
        exact = top_k(ids, vectors, query, 10)
        found += len({g[0] for g in got} & {e[0] for e in exact})
        # Whatever the first pass kept is ranked by its exact float32 cosine.
        assert [g[1] for g in got] == pytest.approx([float(vectors[g[0] - 1] @ query) for g in got], abs=1e-6)
        assert [g[1] for g in got] == sorted((g[1] for g in got), reverse=True)
    assert found / (10 * len(queries)) >= 0.98
    db.close()


def test_small_collections_stay_exact_and_large_ones_get_codes(tmp_path: Path) -> None:
    vectors = _unit(np.random.default_rng(4).standard_normal((40, DIM)))
    db = _store(tmp_path / "l.db", vectors)
    assert VectorIndex().matrix(db, 1, 0, DIM).codes is None  # far below CODES_FROM
    assert VectorIndex(codes_from=41).matrix(db, 1, 0, DIM).codes is None
    assert VectorIndex(codes_from=40).matrix(db, 1, 0, DIM).codes is not None
    db.close()


def test_codes_leave_out_unavailable_documents_and_follow_the_generation(tmp_path: Path) -> None:
    rng = np.random.default_rng(8)
    vectors = _clustered(rng, 3000, DIM, 20)
    db = _store(tmp_path / "l.db", vectors, docs_unavailable=frozenset({7}))
    index = VectorIndex(codes_from=0)
    first = index.matrix(db, 1, 0, DIM)
    assert first.codes is not None and first.codes.words.shape[1] == len(first.ids) == 2999
    assert 7 not in [cid for cid, _ in _search(db, index, vectors[6], 5)]
    db.execute("UPDATE documents SET state = 'indexed' WHERE id = 7")
    best_id, best_score = _search(db, index, vectors[6], 1, generation=1)[0]
    assert best_id == 7 and best_score == pytest.approx(1.0, abs=1e-6)
    reloaded = index.matrix(db, 1, 1, DIM)
    assert reloaded.codes is not None and reloaded.codes.words.shape[1] == 3000
    db.close()


def test_codes_with_deletions_empty_collections_and_fewer_rows_than_k(tmp_path: Path) -> None:
    rng = np.random.default_rng(9)
    vectors = _clustered(rng, 3000, DIM, 20)
    db = _store(tmp_path / "l.db", vectors)
    index = VectorIndex(codes_from=0)
    ids = shortlist(index.matrix(db, 1, 0, DIM), vectors[99], 3)
    assert 100 in ids
    db.execute("DELETE FROM embeddings WHERE chunk_id = 100")  # deleted after the scan
    assert 100 not in [cid for cid, _ in rescore(db, ids, vectors[99], 3)]
    db.close()

    empty = _store(tmp_path / "empty.db", np.zeros((0, DIM), dtype=np.float32))
    matrix = VectorIndex(codes_from=0).matrix(empty, 1, 0, DIM)
    assert len(shortlist(matrix, vectors[0], 10)) == 0
    empty.close()

    few = _store(tmp_path / "few.db", vectors[:4])
    matrix = VectorIndex(codes_from=0).matrix(few, 1, 0, DIM)
    assert matrix.codes is not None
    got = rescore(few, shortlist(matrix, vectors[2], 10), vectors[2], 10)
    assert [g[0] for g in got] == [e[0] for e in top_k(np.arange(1, 5), vectors[:4], vectors[2], 10)]
    assert got[0][0] == 3 and got[0][1] == pytest.approx(1.0, abs=1e-6)
    few.close()


def test_library_search_with_codes_keeps_the_collection_filter(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(vector_index, "CODES_FROM", 0)  # every collection gets codes
    monkeypatch.setattr(vector_index, "first_pass", lambda k, rows: 5)  # and a pass narrower than a
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    words = np.random.default_rng(0).integers(0, 500, (80, 6))
    for i in range(80):  # more rows than the 50 vector candidates a search asks for
        extra = " ".join(f"w{w}" for w in words[i])
        (a / f"a{i}.txt").write_text(f"Zirconium sprocket report {i}, {extra}.\n")
    (b / "b.txt").write_text("Zirconium sprocket notes kept in collection b.\n")
    lib = Library(tmp_path / "library.db", lambda folder: HashingEmbedder(), CountingParser().pool)
    try:
        lib.add_collection("a", [a])
        lib.add_collection("b", [b])
        drain(lib.sync())
        hits = lib.search("zirconium sprocket", collections=["b"], k=10, mode="vector")
        assert hits and {h.collection for h in hits} == {"b"}
        both = lib.search("zirconium sprocket", k=50, mode="vector")
        assert {h.collection for h in both} == {"a", "b"}
        # The sign bits let 5 rows of a through (10 if tied at the cut), not its 80.
        assert 1 <= len([h for h in both if h.collection == "a"]) <= 10
        assert all(m.codes is not None for m in lib._vectors._cache.values())
    finally:
        lib.close()
