"""BM25 that reads the rarest words first: FTS5's scores reproduced, filters and edits kept exact."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import sqlite_utils

from bastion.store.bm25_rare_first import (
    document_frequency,
    index_totals,
    ranked_rows,
    row_lengths,
    word_scores,
)
from bastion.store.chunking import CHUNKER_VERSION
from bastion.store.db import open_library_db
from bastion.store.search import bm25_candidates

COMMON, MIDDLE, RARE = "harbour", "ledger", "zirconium"


def _fts5(db: sqlite_utils.Database, words: list[str], limit: int = 10_000) -> dict[int, float]:
    match = " OR ".join(f'"{w}"' for w in words)
    rows = db.execute(
        "SELECT rowid, bm25(chunks_fts, 1.0, 0.5) AS s FROM chunks_fts WHERE chunks_fts MATCH ? "
        "ORDER BY s LIMIT ?",
        [match, limit],
    ).fetchall()
    return {int(r[0]): -float(r[1]) for r in rows}


def _add_collection(db: sqlite_utils.Database, name: str) -> int:
    cursor = db.execute(
        "INSERT INTO collections (name, embedder_id, dimension, chunker_version, created) "
        "VALUES (?, 'fake', 8, ?, ?)",
        [name, CHUNKER_VERSION, time.time()],
    )
    collection = int(cursor.lastrowid or 0)
    db.execute(
        "INSERT INTO folders (collection_id, root, root_bytes) VALUES (?, ?, ?)",
        [collection, f"/{name}", f"/{name}".encode()],
    )
    return collection


def _add_document(db: sqlite_utils.Database, collection: int, texts: list[tuple[str, str | None]]) -> int:
    folder = db.execute("SELECT id FROM folders WHERE collection_id = ?", [collection]).fetchone()[0]
    path = f"/doc{db.execute('SELECT count(*) FROM documents').fetchone()[0]}"
    doc = int(
        db.execute(
            "INSERT INTO documents (collection_id, folder_id, path, path_bytes, state, chunk_count, "
            "updated_at) VALUES (?, ?, ?, ?, 'indexed', ?, 0)",
            [collection, folder, path, path.encode(), len(texts)],
        ).lastrowid
        or 0
    )
    for ordinal, (text, heading) in enumerate(texts):
        db.execute(
            "INSERT INTO chunks (document_id, ordinal, text, page, char_start, char_end, heading) "
            "VALUES (?, ?, ?, NULL, 0, ?, ?)",
            [doc, ordinal, text, len(text), heading],
        )
    return doc


@pytest.fixture
def db(tmp_path: Path):
    """400 chunks: COMMON in ~70%, MIDDLE in ~15%, RARE in ~3%, varied lengths and headings."""
    rng = np.random.default_rng(7)
    database = open_library_db(tmp_path / "library.db")
    collection = _add_collection(database, "a")
    filler = [f"word{i}" for i in range(300)]
    with database.atomic():
        for _ in range(40):
            texts: list[tuple[str, str | None]] = []
            for _ in range(10):
                words = list(rng.choice(filler, size=int(rng.integers(8, 60))))
                for word, share, most in ((COMMON, 0.7, 4), (MIDDLE, 0.15, 3), (RARE, 0.03, 2)):
                    if rng.random() < share:
                        words += [word] * int(rng.integers(1, most + 1))
                rng.shuffle(words)
                heading = f"{MIDDLE.capitalize()} notes" if rng.random() < 0.1 else None
                texts.append((" ".join(words), heading))
            _add_document(database, collection, texts)
    yield database
    database.close()


def test_word_shares_add_up_to_fts5_bm25(db: sqlite_utils.Database) -> None:
    words = [MIDDLE, COMMON, RARE]
    exact = _fts5(db, words)
    totals = index_totals(db)
    assert totals.rows == db.execute("SELECT count(*) FROM chunks").fetchone()[0]
    lengths = row_lengths(db, list(exact))
    summed = dict.fromkeys(exact, 0.0)
    for word in words:  # in the query's order, as FTS5 adds them
        for chunk_id, share in word_scores(db, word, document_frequency(db, word), lengths, totals).items():
            summed[chunk_id] += share
    assert summed == exact  # bit for bit, headings (weight 0.5) included


def test_without_a_budget_or_under_it_the_ranking_is_fts5s(db: sqlite_utils.Database) -> None:
    words = [COMMON, RARE]
    exact = sorted(_fts5(db, words).items(), key=lambda p: (-p[1], p[0]))[:50]
    for budget in (None, 10_000):
        got = ranked_rows(db, words, 50, budget)
        assert got.exact
        assert sorted(got.rows, key=lambda p: (-p[1], p[0])) == exact


def test_over_budget_the_rare_words_pick_candidates_scored_with_every_word(
    db: sqlite_utils.Database,
) -> None:
    words = [COMMON, MIDDLE, RARE]
    exact = _fts5(db, words)
    common_rows = document_frequency(db, COMMON)
    got = ranked_rows(db, words, 40, budget=common_rows - 1)
    assert not got.exact and len(got.rows) == 40
    for chunk_id, score in got.rows:
        assert score == pytest.approx(exact[chunk_id], rel=1e-12)  # the full score, every word
    assert [s for _, s in got.rows] == sorted((s for _, s in got.rows), reverse=True)
    # A chunk with only the common word scores below every chunk with a rarer one here, so the
    # top list is the exact one.
    best = sorted(exact.items(), key=lambda p: (-p[1], p[0]))[:40]
    assert {c for c, _ in got.rows} == {c for c, _ in best}


def test_too_few_rare_rows_bring_in_the_next_rarest_word(db: sqlite_utils.Database) -> None:
    rare_rows = document_frequency(db, RARE)
    wide = rare_rows + 5
    got = ranked_rows(db, [COMMON, RARE], wide, budget=rare_rows)
    # RARE alone cannot fill the list, so COMMON joins the ranking: FTS5's exact list.
    assert got.exact and len(got.rows) == wide
    exact = sorted(_fts5(db, [COMMON, RARE]).items(), key=lambda p: (-p[1], p[0]))[:wide]
    assert {c for c, _ in got.rows} == {c for c, _ in exact}


def test_collection_filter_and_unavailable_documents_stay_exact_when_pruned(
    db: sqlite_utils.Database,
) -> None:
    other = _add_collection(db, "b")
    b_doc = _add_document(db, other, [(f"{MIDDLE} {COMMON} {COMMON} b only", None)] * 3)
    a_id = db.execute("SELECT id FROM collections WHERE name = 'a'").fetchone()[0]
    b_chunks = {r[0] for r in db.execute("SELECT id FROM chunks WHERE document_id = ?", [b_doc])}
    query = f"{COMMON} {MIDDLE}"
    assert not ranked_rows(db, [COMMON, MIDDLE], 40, budget=1).exact  # limit 10: 40 candidates
    only_b = bm25_candidates(db, query, [other], limit=10, budget=1)
    assert {c for c, _ in only_b} == b_chunks
    only_a = bm25_candidates(db, query, [a_id], limit=10, budget=1)
    assert only_a and not {c for c, _ in only_a} & b_chunks
    db.execute("UPDATE documents SET state = 'unavailable' WHERE id = ?", [b_doc])
    assert bm25_candidates(db, query, [other], limit=10, budget=1) == []


def test_adds_and_deletes_are_seen_at_once(db: sqlite_utils.Database) -> None:
    collection = db.execute("SELECT id FROM collections WHERE name = 'a'").fetchone()[0]
    words = [COMMON, MIDDLE, RARE]
    budget = document_frequency(db, COMMON) - 1
    doc = _add_document(db, collection, [(f"{RARE} {RARE} {RARE} {MIDDLE} {COMMON}", "Zirconium")])
    added = db.execute("SELECT id FROM chunks WHERE document_id = ?", [doc]).fetchone()[0]
    got = ranked_rows(db, words, 20, budget)
    assert got.rows[0][0] == added
    assert got.rows[0][1] == pytest.approx(_fts5(db, words)[added], rel=1e-12)
    db.execute("DELETE FROM chunks WHERE document_id = ?", [doc])
    after = ranked_rows(db, words, 20, budget)
    assert added not in {c for c, _ in after.rows}
    exact = _fts5(db, words)  # totals (rows, mean length) changed with the deletion
    for chunk_id, score in after.rows:
        assert score == pytest.approx(exact[chunk_id], rel=1e-12)


def test_empty_index_and_unknown_words(tmp_path: Path) -> None:
    database = open_library_db(tmp_path / "empty.db")
    assert index_totals(database).rows == 0
    assert ranked_rows(database, ["nothing", "here"], 10, budget=0).rows == []
    database.close()


def test_a_word_fts5_splits_into_a_phrase_scores_as_fts5_does(db: sqlite_utils.Database) -> None:
    collection = db.execute("SELECT id FROM collections WHERE name = 'a'").fetchone()[0]
    _add_document(db, collection, [(f"snake_case {COMMON} snake case snake_case", "Snake_case")] * 50)
    words = ["snake_case", COMMON]  # unicode61 splits on "_": the word is the phrase "snake case"
    exact = _fts5(db, words)
    got = ranked_rows(db, words, 10, budget=document_frequency(db, COMMON) - 1)
    assert not got.exact
    for chunk_id, score in got.rows:
        assert score == pytest.approx(exact[chunk_id], rel=1e-12)
