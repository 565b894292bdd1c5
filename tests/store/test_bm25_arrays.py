"""BM25 in numpy from FTS5's instances: FTS5's own scores, kept exact through edits."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
import sqlite_utils

from bastion.store import bm25_rare_first
from bastion.store.bm25_arrays import Bm25Arrays, decode_varints, read_lengths
from bastion.store.bm25_rare_first import document_frequency, ranked_rows
from bastion.store.db import open_library_db
from bastion.store.search import bm25_candidates
from tests.store.test_bm25_rare_first import (
    COMMON,
    MIDDLE,
    RARE,
    _add_collection,
    _add_document,
    _fts5,
)
from tests.store.test_bm25_rare_first import db as db  # the fixture


def _sorted(scores: dict[int, float], wide: int) -> list[tuple[int, float]]:
    return sorted(scores.items(), key=lambda p: (-p[1], p[0]))[:wide]


def _close_to(got: list[tuple[int, float]], want: list[tuple[int, float]]) -> None:
    """The same ranking: equal scores place by place, up to the order of additions.

    Rows may trade places only where their scores tie to the last bits.
    """
    assert len(got) == len(want)
    for (_, a), (_, b) in zip(got, want, strict=True):
        assert a == pytest.approx(b, rel=1e-12)
    exact = dict(want)
    for chunk_id, score in got:
        if chunk_id in exact:
            assert score == pytest.approx(exact[chunk_id], rel=1e-12)
    tied_at_the_cut = sum(1 for _, b in want if b == pytest.approx(want[-1][1], rel=1e-12))
    assert sum(c not in exact for c, _ in got) <= tied_at_the_cut


def test_scores_are_fts5s_for_every_row(db: sqlite_utils.Database) -> None:
    db.conn.commit()
    arrays = Bm25Arrays(db)
    words = [MIDDLE, COMMON, RARE]
    terms = arrays.terms(words)
    assert terms == words  # no stemming changes these
    exact = _fts5(db, words)
    _close_to(arrays.top(terms, 10_000), _sorted(exact, 10_000))  # headings (weight 0.5) included
    arrays.close()


def test_words_become_fts5s_terms(db: sqlite_utils.Database) -> None:
    collection = db.execute("SELECT id FROM collections WHERE name = 'a'").fetchone()[0]
    _add_document(db, collection, [("The ships were running to the Café harbours", None)] * 3)
    db.conn.commit()
    arrays = Bm25Arrays(db)
    # Porter stems and folded diacritics, as the chunk table's tokenizer makes them.
    assert arrays.terms(["running", "café", "harbours"]) == ["run", "cafe", "harbour"]
    assert arrays.terms(["snake_case", COMMON]) is None  # two tokens: FTS5 ranks that phrase
    # Two words with one stem are two phrases in FTS5's OR query: each adds its share.
    words = ["harbours", COMMON]
    _close_to(arrays.top(arrays.terms(words) or [], 50), _sorted(_fts5(db, words), 50))
    arrays.close()


def test_edits_are_seen_even_when_a_row_id_is_reused(db: sqlite_utils.Database) -> None:
    collection = db.execute("SELECT id FROM collections WHERE name = 'a'").fetchone()[0]
    db.conn.commit()
    arrays = Bm25Arrays(db)
    words = [RARE, COMMON]
    _close_to(arrays.top(words, 30), _sorted(_fts5(db, words), 30))
    doc = _add_document(db, collection, [(f"{RARE} {COMMON}", None)])
    db.conn.commit()
    newest = db.execute("SELECT max(id) FROM chunks").fetchone()[0]
    _close_to(arrays.top(words, 30), _sorted(_fts5(db, words), 30))
    # Delete the newest row and insert a longer one: SQLite gives it the same row id.
    db.execute("DELETE FROM chunks WHERE document_id = ?", [doc])
    _add_document(db, collection, [(f"{RARE} " + "filler " * 40, None)])
    db.conn.commit()
    assert db.execute("SELECT max(id) FROM chunks").fetchone()[0] == newest
    _close_to(arrays.top(words, 30), _sorted(_fts5(db, words), 30))
    arrays.close()


def test_nothing_is_left_open_on_the_librarys_connection(db: sqlite_utils.Database) -> None:
    db.conn.commit()
    arrays = Bm25Arrays(db)
    assert arrays.terms([COMMON]) == [COMMON]
    assert arrays.top([COMMON], 5)
    assert not db.conn.in_transaction
    db.conn.execute("BEGIN")  # a transaction of the caller's: its writes may be FTS5's pending ones
    assert arrays.terms([COMMON]) is None
    db.conn.execute("ROLLBACK")
    arrays.close()


def test_ranked_rows_with_arrays_matches_fts5(
    db: sqlite_utils.Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    db.conn.commit()
    monkeypatch.setattr(bm25_rare_first, "ARRAYS_FROM", 0)
    arrays = Bm25Arrays(db)
    words = [COMMON, MIDDLE, RARE]
    exact = _fts5(db, words)
    whole = ranked_rows(db, words, 40, arrays=arrays)
    assert whole.exact
    _close_to(whole.rows, _sorted(exact, 40))
    # Over the budget: the rare words' candidates, each scored with every word.
    pruned = ranked_rows(db, words, 40, arrays=arrays, arrays_budget=document_frequency(db, COMMON) - 1)
    assert not pruned.exact
    assert {c for c, _ in pruned.rows} == {c for c, _ in _sorted(exact, 40)}
    for chunk_id, score in pruned.rows:
        assert score == pytest.approx(exact[chunk_id], rel=1e-12)
    # One word alone is ranked whole.
    single = ranked_rows(db, [COMMON], 25, arrays=arrays)
    _close_to(single.rows, _sorted(_fts5(db, [COMMON]), 25))
    arrays.close()


def test_collection_filter_holds_with_arrays(
    db: sqlite_utils.Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bm25_rare_first, "ARRAYS_FROM", 0)
    other = _add_collection(db, "b")
    b_doc = _add_document(db, other, [(f"{MIDDLE} {COMMON} {COMMON} b only", None)] * 3)
    db.conn.commit()
    b_chunks = {r[0] for r in db.execute("SELECT id FROM chunks WHERE document_id = ?", [b_doc])}
    arrays = Bm25Arrays(db)
    query = f"{COMMON} {MIDDLE}"
    with_arrays = bm25_candidates(db, query, [other], limit=10, arrays=arrays)
    assert {c for c, _ in with_arrays} == b_chunks
    _close_to(with_arrays, bm25_candidates(db, query, [other], limit=10))
    arrays.close()


def test_lengths_decode_fts5s_docsize_varints(tmp_path: Path) -> None:
    database = open_library_db(tmp_path / "lengths.db")
    collection = _add_collection(database, "a")
    long_text = " ".join(f"w{i}" for i in range(20_000))  # a 3-byte varint
    _add_document(database, collection, [("one two", "Head"), (long_text, None), ("x", None)])
    database.conn.commit()
    lengths = read_lengths(database.conn)
    for row_id, blob in database.execute("SELECT id, sz FROM chunks_fts_docsize").fetchall():
        assert lengths[row_id] == sum(decode_varints(bytes(blob)))
    assert sorted(int(n) for n in lengths if n) == [1, 3, 20_000]
    database.close()


def test_empty_index_and_no_fts5vocab(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    database = open_library_db(tmp_path / "empty.db")
    arrays = Bm25Arrays(database)
    assert arrays.top(["nothing"], 10) == []
    arrays.close()
    # Where the virtual table cannot be made, FTS5 ranks every query: terms() declines.
    broken = Bm25Arrays(database)
    monkeypatch.setattr(broken, "_create_tables", lambda: False)
    assert broken.terms(["anything"]) is None
    database.close()
    with pytest.raises(sqlite3.ProgrammingError):
        database.execute("SELECT 1")
