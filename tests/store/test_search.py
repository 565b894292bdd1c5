"""Hybrid search: safe FTS queries, top-1 correctness, RRF ordering, collection filter, dedup."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from bastion.store.library import Library
from bastion.store.search import (
    Candidate,
    chunk_documents,
    fts_query,
    fuse_documents,
    load_hits,
    rrf_fuse,
)
from bastion.store.vector_index import top_k

from .fakes import CountingParser, HashingEmbedder, drain

FILLER = "Meetings were held and minutes were recorded by the committee secretary. "


@pytest.fixture
def library(tmp_path: Path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    for i in range(12):
        (a / f"report{i}.txt").write_text(f"# Report {i}\n\n" + FILLER * 8 + f"Item {i} noted.\n")
    (a / "needle.txt").write_text(
        "# Needle\n\n" + FILLER * 3 + "\n\nThe zirconium sprocket tolerance is 0.02 millimetres.\n\n"
        + FILLER * 3
    )
    (b / "other.txt").write_text("Zirconium appears here too, in collection b, with sprocket notes.\n")
    parser = CountingParser()
    lib = Library(tmp_path / "library.db", lambda folder: HashingEmbedder(), parser.pool)
    lib.add_collection("a", [a])
    lib.add_collection("b", [b])
    drain(lib.sync())
    yield lib
    lib.close()


@pytest.mark.parametrize(
    "query",
    ['zirconium" OR "x', "NEAR(a b)", "col:value", "a AND OR NOT", "*", "(((", "title:^x", "'\";--"],
)
def test_fts_syntax_in_queries_is_inert(library: Library, query: str) -> None:
    library.search(query, mode="bm25")  # must not raise an FTS5 syntax error


def test_fts_query_quotes_words_and_drops_stopwords() -> None:
    assert fts_query('What is the "zirconium" tolerance?') == '"zirconium" OR "tolerance"'
    assert fts_query("the") == '"the"'  # only stopwords: keep them
    assert fts_query("  ?!  ") is None


def test_known_phrase_is_top1_for_bm25_and_hybrid(library: Library) -> None:
    for mode in ("bm25", "hybrid"):
        hits = library.search("zirconium sprocket tolerance", collections=["a"], k=3, mode=mode)  # type: ignore[arg-type]
        assert hits[0].path.endswith("needle.txt"), mode
        assert "zirconium sprocket" in hits[0].text
    top = library.search("zirconium sprocket tolerance", collections=["a"], k=1)[0]
    assert top.bm25_rank == 1 and top.bm25_score is not None and top.bm25_score > 0
    assert top.vector_rank is not None and top.vector_score is not None
    assert top.heading == "Needle" and top.page is None
    assert top.char_end > top.char_start


def test_hits_point_into_the_file(library: Library) -> None:
    hit = library.search("zirconium", collections=["a"], k=1)[0]
    text = Path(hit.path).read_text()
    assert text[hit.char_start : hit.char_end] == hit.text


def test_collection_filter(library: Library) -> None:
    assert {h.collection for h in library.search("zirconium sprocket", k=10)} == {"a", "b"}
    only_b = library.search("zirconium sprocket", collections=["b"], k=10)
    assert only_b and {h.collection for h in only_b} == {"b"}


def test_rrf_orders_by_fused_rank() -> None:
    bm25 = [(1, 9.0), (2, 8.0), (3, 7.0)]
    vector = [(3, 0.9), (4, 0.8), (1, 0.7)]
    fused = rrf_fuse(bm25, vector, k=60)
    # 1: 1/61 + 1/63; 3: 1/63 + 1/61 (tie, broken by best rank then id); 2: 1/62; 4: 1/62.
    assert [c.chunk_id for c in fused] == [1, 3, 2, 4]
    assert fused[0].score == pytest.approx(1 / 61 + 1 / 63)
    assert fused[0].bm25_rank == 1 and fused[0].vector_rank == 3
    assert fused[2].vector_rank is None and fused[3].bm25_rank is None
    weighted = rrf_fuse(bm25, vector, bm25_weight=0.1)
    assert weighted[0].chunk_id == 3


def test_document_fusion_counts_both_votes_of_a_document_split_across_chunks() -> None:
    # Document 100: its title chunk 1 tops BM25, its body chunk 2 tops the vector list.
    # Document 400: one chunk, third in both lists. Chunk-level RRF puts chunk 3 first.
    bm25 = [(1, 9.0), (10, 8.0), (3, 7.0)]
    vector = [(2, 0.9), (20, 0.8), (3, 0.7)]
    owners = {1: 100, 2: 100, 10: 200, 20: 300, 3: 400}
    assert rrf_fuse(bm25, vector)[0].chunk_id == 3
    fused = fuse_documents(bm25, vector, owners)
    # Each document once, by document RRF (100: 2/61, 400: 2/63, 200 and 300: 1/62), then
    # document 100's other chunk.
    assert [c.chunk_id for c in fused] == [1, 3, 10, 20, 2]
    assert fused[0].score == pytest.approx(2 / 61)
    assert fused[1].score == pytest.approx(2 / 63)
    assert fused[0].bm25_rank == 1 and fused[0].vector_rank is None  # chunk-level ranks kept
    assert fused[-1].score == pytest.approx(1 / 61)  # a further chunk keeps its chunk score
    heavy_vector = fuse_documents(bm25, vector, owners, bm25_weight=0.1)
    # 100: 1.1/61, 400: 1.1/63, 300: 1/62; the vector's chunk now stands for document 100.
    assert [c.chunk_id for c in heavy_vector] == [2, 3, 20, 10, 1]


def test_document_fusion_breaks_ties_by_bm25_rank() -> None:
    bm25 = [(9, 3.0), (6, 2.0), (4, 1.0)]
    vector = [(4, 0.9), (8, 0.8), (9, 0.7)]
    owners = {9: 1, 6: 2, 4: 3, 8: 4}
    assert rrf_fuse(bm25, vector)[0].chunk_id == 4  # chunk level: the tie goes to the lower id
    assert [c.chunk_id for c in fuse_documents(bm25, vector, owners)] == [9, 4, 6, 8]


def test_document_fusion_drops_chunks_of_deleted_documents() -> None:
    fused = fuse_documents([(1, 2.0), (2, 1.0)], [(2, 0.5)], {2: 7})
    assert [c.chunk_id for c in fused] == [2]


def test_hybrid_hits_show_every_document_before_a_second_chunk_of_one(library: Library) -> None:
    query = "zirconium sprocket tolerance committee minutes"
    for fusion in ("documents", "chunks"):
        hits = library.search(query, collections=["a"], k=8, fusion=fusion)  # type: ignore[arg-type]
        assert hits[0].path.endswith("needle.txt"), fusion
    hits = library.search(query, collections=["a"], k=20)
    documents = [h.document_id for h in hits]
    distinct = len(set(documents))
    assert distinct > 1 and len(set(documents[:distinct])) == distinct
    owners = chunk_documents(library.db, [h.chunk_id for h in hits] + [10**9])
    assert owners == {h.chunk_id: h.document_id for h in hits}  # a missing chunk is left out


def test_overlapping_chunks_of_one_document_are_deduplicated(library: Library) -> None:
    doc = library.db.execute("SELECT id FROM documents LIMIT 1").fetchone()[0]
    library.db.execute("DELETE FROM chunks WHERE document_id = ?", [doc])
    library.db.conn.executemany(
        "INSERT INTO chunks (id, document_id, ordinal, text, page, char_start, char_end) "
        "VALUES (?, ?, ?, ?, 1, ?, ?)",
        [(9001, doc, 0, "aaa", 0, 100), (9002, doc, 1, "bbb", 80, 180), (9003, doc, 2, "ccc", 180, 260)],
    )
    fused = [Candidate(9002, 0.3), Candidate(9001, 0.2), Candidate(9003, 0.1)]
    hits = load_hits(library.db, fused, k=10)
    assert [h.chunk_id for h in hits] == [9002, 9003]


def test_top_k_is_exact() -> None:
    rng = np.random.default_rng(0)
    matrix = rng.standard_normal((500, 16)).astype(np.float32)
    query = rng.standard_normal(16).astype(np.float32)
    ids = np.arange(1000, 1500, dtype=np.int64)
    got = top_k(ids, matrix, query, 10)
    expected = np.argsort(-(matrix @ query))[:10] + 1000
    assert [g[0] for g in got] == list(expected)


def test_empty_query_and_empty_library(tmp_path: Path) -> None:
    lib = Library(tmp_path / "x.db", lambda folder: HashingEmbedder(), CountingParser().pool)
    assert lib.search("anything") == []
    assert lib.search("") == []
    lib.close()


def test_timings_separate_query_embedding(library: Library) -> None:
    library.search("zirconium")
    assert set(library.last_timings) >= {"embed_ms", "search_ms", "bm25_ms", "vector_ms"}


def test_the_search_thread_reads_what_a_sync_committed_and_stops_with_the_library(
    tmp_path: Path, library: Library
) -> None:
    # The vector scan and the whole-document BM25 run on a thread with its own connection,
    # opened at the first search; a sync after it must still be seen there.
    assert library.search("zirconium", collections=["a"])[0].path.endswith("needle.txt")
    (tmp_path / "a" / "late.txt").write_text("A walrus sighting, logged after the first search.\n")
    drain(library.sync("a"))
    hits = library.search("walrus sighting", collections=["a"])
    assert hits and hits[0].path.endswith("late.txt")
    assert hits[0].vector_rank is not None  # found by the scan on the search thread too
    assert any(t.name.startswith("bastion-search") for t in threading.enumerate())
    library.close()
    assert not any(t.name.startswith("bastion-search") for t in threading.enumerate())


@pytest.mark.slow
def test_real_minilm_end_to_end(tmp_path: Path, minilm_path: Path) -> None:
    from bastion.store.embedder import SentenceTransformerEmbedder

    root = tmp_path / "docs"
    root.mkdir()
    (root / "cats.txt").write_text("Cats are small domesticated felines that purr and catch mice.")
    (root / "rockets.txt").write_text("Rockets burn propellant to reach orbit around the Earth.")
    (root / "bread.txt").write_text("Bakers knead dough, let it rise, and bake loaves of bread.")
    embedder = SentenceTransformerEmbedder(minilm_path)
    lib = Library(tmp_path / "library.db", lambda folder: embedder, CountingParser().pool)
    lib.add_collection("docs", [root])
    drain(lib.sync())
    hits = lib.search("kitten pets", k=3, mode="vector")
    assert hits[0].path.endswith("cats.txt")
    vectors = lib.db.execute("SELECT vector FROM embeddings").fetchall()
    norms = [np.linalg.norm(np.frombuffer(v[0], dtype="<f4")) for v in vectors]
    assert len(vectors[0][0]) == 384 * 4 and all(abs(n - 1) < 1e-4 for n in norms)
    lib.close()


def test_refuses_pickle_only_model_folder(tmp_path: Path) -> None:
    from bastion.store.embedder import EmbedderError, SentenceTransformerEmbedder

    folder = tmp_path / "evil"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    (folder / "pytorch_model.bin").write_bytes(b"not really a pickle")
    with pytest.raises(EmbedderError, match="safetensors"):
        SentenceTransformerEmbedder(folder)


def test_default_embedder_folder_has_safetensors() -> None:
    from bastion.store.embedder import default_embedder_folder

    assert (default_embedder_folder() / "model.safetensors").is_file()


def test_bm25_filter_falls_back_when_other_collections_crowd_the_top(library: Library) -> None:
    from bastion.store.search import bm25_candidates

    b_id = library.collection("b").id
    # "committee" is in every chunk of collection a; only b's chunk has "notes".
    got = bm25_candidates(library.db, "committee notes", [b_id], limit=1)
    assert len(got) == 1
    path = library.db.execute(
        "SELECT d.path FROM chunks c JOIN documents d ON d.id = c.document_id WHERE c.id = ?", [got[0][0]]
    ).fetchone()[0]
    assert path.endswith("other.txt")


def test_library_search_is_the_same_with_bm25_scored_in_numpy(
    library: Library, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bastion.store import bm25_rare_first

    queries = ["zirconium sprocket tolerance", "committee minutes report", "item noted secretary"]
    fts5_only = {}
    monkeypatch.setattr(bm25_rare_first, "ARRAYS_FROM", 10**9)  # every query: FTS5 ranks it
    for query in queries:
        fts5_only[query] = [(h.path, h.chunk_id) for h in library.search(query, k=5)]
    monkeypatch.setattr(bm25_rare_first, "ARRAYS_FROM", 0)  # every query: scored in numpy
    arrays = library._bm25_arrays
    calls = []
    top = arrays.top
    monkeypatch.setattr(arrays, "top", lambda *a, **k: calls.append(a) or top(*a, **k))
    for query in queries:
        assert [(h.path, h.chunk_id) for h in library.search(query, k=5)] == fts5_only[query]
    assert len(calls) == len(queries)
    assert not library.db.conn.in_transaction
