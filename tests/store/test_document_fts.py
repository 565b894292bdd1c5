"""Whole-document BM25: its text from chunks, its migration, its upkeep by sync, its place in search."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlite_utils

from bastion.store import library as library_module
from bastion.store import migrations, search_thread, sync
from bastion.store.document_fts import (
    document_candidates,
    document_text,
    rarest_words_match,
    stand_in_chunks,
)
from bastion.store.library import Library
from bastion.store.library_types import SearchHit
from bastion.store.search import Candidate, bm25_candidates, documents_to_show, fuse_documents

from .fakes import CountingParser, HashingEmbedder, drain

FILLER = "Meetings were held and minutes were recorded by the committee secretary. "
# Both words in one document, but ~100 filler tokens apart: never in one 64-token chunk.
SPLIT = "# Survey\n\nA walrus was counted on the shore. " + FILLER * 8 + "The glacier retreated.\n"
# Documents without the query words, so that BM25's IDF of those words is positive.
DIMENSION = 256  # fewer hash collisions between unrelated words than the fake's 64
MINUTES = {f"minutes{i}.txt": FILLER * 2 for i in range(6)}


def make_library(tmp_path: Path, files: dict[str, str], name: str = "a") -> Library:
    folder = tmp_path / name
    folder.mkdir(exist_ok=True)
    for file, text in files.items():
        (folder / file).write_text(text)
    lib = Library(tmp_path / "library.db", lambda f: HashingEmbedder(DIMENSION), CountingParser().pool)
    if name not in {c.name for c in lib.collections()}:
        lib.add_collection(name, [folder])
    drain(lib.sync(name))
    return lib


def whole_matches(db: sqlite_utils.Database, word: str) -> set[str]:
    """Names of the documents whose whole-document row matches ``word``."""
    return {
        Path(r[0]).name
        for r in db.execute(
            "SELECT d.path FROM documents_fts f JOIN documents d ON d.id = f.rowid "
            "WHERE documents_fts MATCH ?",
            [word],
        ).fetchall()
    }


def check_integrity(db: sqlite_utils.Database) -> None:
    db.execute("INSERT INTO documents_fts (documents_fts) VALUES ('integrity-check')")
    # Every row belongs to a document that has chunks, and every such document has a row.
    rows = {r[0] for r in db.execute("SELECT document_id FROM document_texts").fetchall()}
    with_chunks = {r[0] for r in db.execute("SELECT DISTINCT document_id FROM chunks").fetchall()}
    assert rows == with_chunks


def test_document_text_takes_the_overlap_out_and_joins_pages() -> None:
    page = "alpha beta gamma delta epsilon"
    chunks = [(1, 0, 16, page[0:16]), (1, 11, 30, page[11:30]), (2, 0, 5, "zeta.")]
    assert document_text(chunks) == page + "\nzeta."
    # A chunk inside the one before adds nothing; a gap starts a new piece.
    assert document_text([(None, 0, 10, "0123456789"), (None, 2, 8, "234567"), (None, 12, 14, "cd")]) == (
        "0123456789\ncd"
    )
    assert document_text([]) == ""


def test_sync_writes_removes_and_rewrites_whole_document_rows(tmp_path: Path) -> None:
    lib = make_library(tmp_path, {"split.txt": SPLIT, "other.txt": "Walrus tusks.\n"})
    db = lib.db
    assert whole_matches(db, "walrus") == {"split.txt", "other.txt"}
    # The stored text is the document's, once: the chunks overlap, the row does not repeat.
    text = db.execute("SELECT text FROM document_texts t JOIN documents d ON d.id = t.document_id "
                      "WHERE d.path LIKE '%split.txt'").fetchone()[0]
    assert text.split() == SPLIT.split()
    assert db.execute("SELECT COUNT(*) FROM chunks c JOIN documents d ON d.id = c.document_id "
                      "WHERE d.path LIKE '%split.txt'").fetchone()[0] > 1
    check_integrity(db)

    (tmp_path / "a" / "other.txt").write_text("Narwhal tusks.\n")  # re-indexed
    (tmp_path / "a" / "split.txt").unlink()  # deleted
    (tmp_path / "a" / "blank.txt").write_text("")  # nothing to index: no row
    drain(lib.sync("a"))
    assert whole_matches(db, "walrus") == set()
    assert whole_matches(db, "narwhal") == {"other.txt"}
    check_integrity(db)

    lib.remove_collection("a")
    assert db.execute("SELECT COUNT(*) FROM document_texts").fetchone()[0] == 0
    check_integrity(db)
    lib.close()


def test_a_library_indexed_before_the_migration_gets_its_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = [m for m in migrations.MIGRATIONS if m[0] != "m003_document_fts"]
    monkeypatch.setattr(migrations, "MIGRATIONS", before)
    monkeypatch.setattr(sync, "write_document_text", lambda db, document_id: None)  # the old sync
    lib = make_library(tmp_path, {"split.txt": SPLIT, "other.txt": "Walrus tusks.\n", **MINUTES})
    assert "document_texts" not in lib.db.table_names()
    lib.close()
    monkeypatch.undo()

    lib = Library(tmp_path / "library.db", lambda f: HashingEmbedder(DIMENSION), CountingParser().pool)
    assert whole_matches(lib.db, "glacier") == {"split.txt"}
    assert whole_matches(lib.db, "walrus") == {"split.txt", "other.txt"}
    check_integrity(lib.db)
    assert [d for d, _ in document_candidates(lib.db, "glacier", [lib.collection("a").id])] == [
        lib.db.execute("SELECT id FROM documents WHERE path LIKE '%split.txt'").fetchone()[0]
    ]
    assert lib.search("glacier", k=3)[0].path.endswith("split.txt")
    lib.close()


def test_whole_document_candidates_respect_collections_and_unavailable_documents(tmp_path: Path) -> None:
    lib = make_library(tmp_path, {"split.txt": SPLIT})
    lib.close()
    lib = make_library(tmp_path, {"b.txt": "A walrus and a glacier, in collection b.\n"}, name="b")
    a, b = lib.collection("a").id, lib.collection("b").id

    def names(collections: list[int]) -> list[str]:
        found = document_candidates(lib.db, "walrus glacier", collections)
        paths = {r[0]: r[1] for r in lib.db.execute("SELECT id, path FROM documents").fetchall()}
        return [Path(paths[doc]).name for doc, _ in found]

    assert sorted(names([a, b])) == ["b.txt", "split.txt"]
    assert names([a]) == ["split.txt"]
    assert names([]) == []
    assert document_candidates(lib.db, "  ?!  ", [a, b]) == []
    lib.db.execute("UPDATE documents SET state = 'unavailable' WHERE collection_id = ?", [a])
    assert names([a, b]) == ["b.txt"]
    assert all(not h.path.endswith("split.txt") for h in lib.search("walrus glacier", k=10))
    lib.close()


def test_over_the_postings_budget_only_the_rarest_words_are_ranked(tmp_path: Path) -> None:
    # "minutes" is in 7 documents, "walrus" in 2, "glacier" in 1.
    lib = make_library(tmp_path, {"split.txt": SPLIT, "other.txt": "Walrus tusks.\n", **MINUTES})
    query = "minutes walrus glacier"
    assert rarest_words_match(lib.db, query) == '"minutes" OR "walrus" OR "glacier"'
    assert rarest_words_match(lib.db, query, budget=3) == '"walrus" OR "glacier"'  # 2 + 1 postings
    assert rarest_words_match(lib.db, query, budget=1) == '"glacier"'
    assert rarest_words_match(lib.db, "minutes", budget=1) == '"minutes"'  # the rarest stays
    assert rarest_words_match(lib.db, "  ?!  ") is None
    lib.close()


def test_whole_document_list_lifts_a_document_whose_words_are_in_different_chunks() -> None:
    # Chunk lists: document 1 (chunks 10, 11) has one query word per chunk, so it ranks second
    # in both; documents 2 and 3 each top one list and are third in the other (a near tie that
    # 1 loses). The whole-document list ranks 1 first.
    bm25 = [(20, 5.0), (10, 4.0), (30, 3.0)]
    vector = [(30, 0.9), (11, 0.8), (20, 0.7)]
    owners = {10: 1, 11: 1, 20: 2, 30: 3}
    whole = [(1, 9.0), (2, 4.0), (3, 3.0)]
    two = [owners[c.chunk_id] for c in fuse_documents(bm25, vector, owners)][:3]
    three = [owners[c.chunk_id] for c in fuse_documents(bm25, vector, owners, whole=whole)][:3]
    assert two == [2, 3, 1]
    assert three == [1, 2, 3]
    lifted = fuse_documents(bm25, vector, owners, whole=whole)[0]
    assert lifted.score == pytest.approx(1 / 62 + 1 / 62 + 1 / 61)


def test_a_document_only_the_whole_list_found_is_shown_by_a_stand_in_chunk() -> None:
    bm25 = [(20, 5.0)]
    vector = [(20, 0.9)]
    owners = {20: 2}
    whole = [(7, 9.0), (2, 4.0)]
    assert documents_to_show(bm25, vector, owners, whole, top=10) == [7]
    assert documents_to_show(bm25, vector, owners, whole, top=1) == []  # 7 would not be shown
    without = fuse_documents(bm25, vector, owners, whole=whole)
    assert [c.chunk_id for c in without] == [20]  # no chunk to show 7 by: left out
    stand_in = Candidate(chunk_id=70, score=0.0, bm25_score=1.5, vector_score=0.4)
    fused = fuse_documents(bm25, vector, owners, whole=whole, stand_ins={7: stand_in})
    assert [c.chunk_id for c in fused] == [20, 70]
    assert fused[1].score == pytest.approx(1 / 61) and fused[1].bm25_score == 1.5


def test_stand_in_is_the_documents_best_bm25_chunk_with_its_cosine(tmp_path: Path) -> None:
    lib = make_library(tmp_path, {"split.txt": SPLIT})
    doc = lib.db.execute("SELECT id FROM documents").fetchone()[0]
    vector = HashingEmbedder(DIMENSION).embed(["glacier retreated"])[0]
    chosen = stand_in_chunks(lib.db, "glacier retreated", [doc], {lib.collection("a").id: vector})
    chunk = chosen[doc]
    text = lib.db.execute("SELECT text FROM chunks WHERE id = ?", [chunk.chunk_id]).fetchone()[0]
    assert "glacier" in text and "walrus" not in text
    assert chunk.bm25_score is not None and chunk.bm25_score > 0
    assert chunk.vector_score is not None and 0 < chunk.vector_score <= 1
    assert chunk.bm25_rank is None and chunk.vector_rank is None
    # Another collection's query vector is not used for it.
    assert stand_in_chunks(lib.db, "glacier", [doc], {})[doc].vector_score is None
    lib.close()


def test_library_search_shows_a_document_only_whole_document_bm25_found(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Short walrus notes fill both chunk lists (cut to 2 here, as 50 are in a big library); the
    # survey mentions a walrus once in a long text, and only whole-document BM25 (50) lists it.
    files = {f"note{i}.txt": f"Walrus note {i}.\n" for i in range(6)}
    lib = make_library(tmp_path, {**files, **MINUTES, "split.txt": SPLIT})
    monkeypatch.setattr(search_thread, "CANDIDATES", 2)
    monkeypatch.setattr(library_module, "bm25_candidates",
                        lambda db, query, ids, **kw: bm25_candidates(db, query, ids, limit=2, **kw))

    def survey(fusion: str) -> list[SearchHit]:
        hits = lib.search("walrus", k=100, fusion=fusion)  # type: ignore[arg-type]
        return [h for h in hits if h.path.endswith("split.txt")]

    assert survey("documents") == []
    shown = survey("whole")
    assert len(shown) == 1
    assert "walrus" in shown[0].text  # its chunk that holds the word
    assert shown[0].bm25_score is not None and shown[0].vector_score is not None
    assert shown[0].bm25_rank is None and shown[0].vector_rank is None
    assert shown[0].score == pytest.approx(1 / (60 + 7))  # 7th in the whole-document list
    assert lib.last_timings["whole_bm25_ms"] >= 0
    lib.close()
