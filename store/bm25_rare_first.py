"""BM25 top-k that reads the rarest query words first, so common words cannot stall a search.

FTS5 ranks an OR query by calling ``bm25()`` on every row that holds any of the words, so its
cost grows with the words' postings: a word found in 5% of a million chunks makes FTS5 score
50,000 rows (~100 ms at 1M chunks on the 2-core reference machine). Here each word's document
frequency is counted first (counting is some 30× cheaper per row than ranking). If all the
words together have at most ``POSTINGS_BUDGET`` postings, FTS5 ranks the query as it always did.
Otherwise the rarest words within the budget pick the candidates (``CANDIDATE_DEPTH × wide`` of
them, by FTS5's own BM25 over those words) and every candidate is rescored with all the words:
the common words' share is computed here with the same formula, constants and inputs as FTS5's
``bm25()``, from their instances (``highlight()``), the row's length (``chunks_fts_docsize``)
and the index totals (the FTS5 averages record). A candidate's score is then FTS5's full score,
up to the order in which the words' shares are added (``tests/store/test_bm25_rare_first.py``).
What can differ from the exact ranking is which rows become candidates: a chunk holding only
the common words, or too little of the rare ones to be among the candidates. The words are
common precisely because such chunks are many and each scores little; ``bench/search_bench.py``
measures how much of the exact top 10 and top 50 is kept.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import sqlite_utils

from .bm25_arrays import HEADING_WEIGHT, K1, B, Bm25Arrays, decode_varints, read_totals

# This index's column weights for FTS5's bm25(): chunk text, heading (constants: bm25_arrays).
WEIGHTS = (1.0, HEADING_WEIGHT)
# Postings FTS5 may rank in one query; past it the commonest words only rescore candidates.
# FTS5 ranks ~3 µs a posting at 1M chunks (counting is ~0.1 µs), so 20,000 postings keep BM25
# near 50 ms; at 1M chunks this kept 0.990 of the exact top 10 and 0.946 of the top 50 on
# search_bench's queries (40,000: 0.996 and 0.985, p95 CPU 68 ms instead of 50).
POSTINGS_BUDGET = 20_000
# With ``Bm25Arrays`` (FTS5's scores computed in numpy, ~0.6 µs a posting), queries of more than
# ARRAYS_FROM postings are scored there, within ARRAYS_BUDGET postings; smaller ones cost FTS5
# little (~10 ms) and need no row-length cache. At 1M chunks, top 10 / top 50 of the exact
# ranking kept (ties counted by score), BM25 p95: 20,000 postings 0.989 / 0.944, 26 ms; 40,000
# 0.995 / 0.983, 24 ms; 60,000 1.000 / 0.991, 25 ms (FTS5 within 20,000: 0.990 / 0.946, 47 ms).
ARRAYS_FROM = 4_000
ARRAYS_BUDGET = 60_000
# Candidates the rare words hand on, per row asked for: rescoring costs little next to ranking
# (at 1M chunks, 1 → 3 took the top 50 kept from 0.908 to 0.946 at no measurable cost).
CANDIDATE_DEPTH = 3
_OPEN, _CLOSE = "\x02", "\x03"

_RANKED = (
    f"SELECT rowid, bm25(chunks_fts, {WEIGHTS[0]}, {WEIGHTS[1]}) AS s FROM chunks_fts "
    "WHERE chunks_fts MATCH ? ORDER BY s LIMIT ?"
)


@dataclass(frozen=True)
class IndexTotals:
    """What FTS5's bm25() knows of the whole index: rows and their mean length in tokens."""

    rows: int
    mean_tokens: float


@dataclass(frozen=True)
class RankedRows:
    """A BM25 top list and how it was made (for benchmarks and tests)."""

    rows: list[tuple[int, float]]  # (chunk id, score; higher is better), best first
    exact: bool  # True when FTS5 ranked every word's postings itself
    postings: int  # postings of all the query's words


def phrase(word: str) -> str:
    """A word as an FTS5 string literal (``\\w+`` words cannot contain the quote to escape)."""
    return f'"{word}"'


def ranked_rows(
    db: sqlite_utils.Database,
    words: Sequence[str],
    wide: int,
    budget: int | None = POSTINGS_BUDGET,
    arrays: Bm25Arrays | None = None,
    arrays_budget: int = ARRAYS_BUDGET,
) -> RankedRows:
    """The ``wide`` best rows for ``words`` OR-ed, by FTS5's BM25 (higher score is better).

    Args:
        db: The library database.
        words: Distinct lower-case ``\\w+`` words.
        wide: How many rows to return.
        budget: Postings FTS5 may rank; None ranks every word's postings (exact, as before).
        arrays: Scores the same BM25 in numpy (``bm25_arrays``), ~4× cheaper a posting, for
            queries of over ``ARRAYS_FROM`` postings; then ``arrays_budget`` is the budget.
        arrays_budget: Postings ``arrays`` may score in one query.
    """
    if not words or wide <= 0:
        return RankedRows([], True, 0)
    if budget is None or (len(words) == 1 and arrays is None):
        return RankedRows(_fts5_top(db, words, wide), True, 0)
    counts = {w: document_frequency(db, w) for w in words}
    postings = sum(counts.values())
    terms = arrays.terms(words) if arrays is not None and postings > ARRAYS_FROM else None
    ranker: _Ranker
    if arrays is not None and terms is not None:
        ranker, budget = _ArraysRanker(arrays, dict(zip(words, terms, strict=True))), arrays_budget
    else:
        ranker = _Fts5Ranker(db)
    if postings <= budget or len(words) == 1:
        return RankedRows(ranker.top(words, wide), True, postings)
    by_rarity = sorted(words, key=lambda w: (counts[w], w))
    take = 1
    while take < len(by_rarity) and sum(counts[w] for w in by_rarity[: take + 1]) <= budget:
        take += 1
    # Candidates by the rare words' share of the score (each word's share depends only on that
    # word and the row, so the score over the rare words is exactly that share). Fewer than
    # ``wide`` rows holding a rare word: the next rarest word must supply the rest.
    while True:
        if take == len(by_rarity):
            return RankedRows(ranker.top(words, wide), True, postings)
        scores = dict(ranker.top(by_rarity[:take], wide * CANDIDATE_DEPTH))
        if len(scores) >= wide:
            break
        take += 1
    totals = index_totals(db)
    lengths = ranker.row_lengths(list(scores))
    for word in by_rarity[take:]:
        for chunk_id, share in word_scores(db, word, counts[word], lengths, totals).items():
            scores[chunk_id] += share
    rows = sorted(scores.items(), key=lambda pair: (-pair[1], pair[0]))[:wide]
    return RankedRows(rows, False, postings)


class _Ranker(Protocol):
    def top(self, words: Sequence[str], wide: int) -> list[tuple[int, float]]: ...

    def row_lengths(self, chunk_ids: Sequence[int]) -> dict[int, int]: ...


@dataclass(frozen=True)
class _Fts5Ranker:
    """FTS5's own ``bm25()`` ranking, row lengths from its docsize table."""

    db: sqlite_utils.Database

    def top(self, words: Sequence[str], wide: int) -> list[tuple[int, float]]:
        return _fts5_top(self.db, words, wide)

    def row_lengths(self, chunk_ids: Sequence[int]) -> dict[int, int]:
        return row_lengths(self.db, chunk_ids)


@dataclass(frozen=True)
class _ArraysRanker:
    """The same scores from ``Bm25Arrays``, row lengths from its cache."""

    arrays: Bm25Arrays
    term_of: dict[str, str]

    def top(self, words: Sequence[str], wide: int) -> list[tuple[int, float]]:
        return self.arrays.top([self.term_of[w] for w in words], wide)

    def row_lengths(self, chunk_ids: Sequence[int]) -> dict[int, int]:
        return self.arrays.row_lengths(chunk_ids)


def document_frequency(db: sqlite_utils.Database, word: str) -> int:
    """How many rows hold ``word`` (FTS5's ``nHit`` for the word's IDF)."""
    row = db.execute(
        "SELECT count(*) FROM chunks_fts WHERE chunks_fts MATCH ?", [phrase(word)]
    ).fetchone()
    return int(row[0])


def index_totals(db: sqlite_utils.Database) -> IndexTotals:
    """Row count and mean row length in tokens, read from FTS5's averages record."""
    return IndexTotals(*read_totals(db.conn))


def row_lengths(db: sqlite_utils.Database, chunk_ids: Sequence[int]) -> dict[int, int]:
    """Each row's length in tokens, all columns, from the docsize table FTS5 itself reads."""
    marks = ",".join("?" * len(chunk_ids))
    return {
        int(r[0]): sum(decode_varints(bytes(r[1])))
        for r in db.execute(
            f"SELECT id, sz FROM chunks_fts_docsize WHERE id IN ({marks})", list(chunk_ids)
        ).fetchall()
    }


def word_scores(
    db: sqlite_utils.Database,
    word: str,
    frequency: int,
    lengths: dict[int, int],
    totals: IndexTotals,
) -> dict[int, float]:
    """``word``'s share of FTS5's bm25() for each row of ``lengths`` that holds it.

    Same arithmetic, in the same order, as fts5_aux.c's fts5Bm25Function, so the shares of all
    of a query's words add up to FTS5's own score. Instances come from highlight(), which marks
    every instance of a one-word phrase.
    """
    if not lengths or totals.rows <= 0:
        return {}
    idf = math.log((totals.rows - frequency + 0.5) / (frequency + 0.5))
    if idf <= 0.0:
        idf = 1e-6
    chunk_ids = list(lengths)
    marks = ",".join("?" * len(chunk_ids))
    shares: dict[int, float] = {}
    for chunk_id, text, heading in db.execute(
        f"""
        SELECT rowid, highlight(chunks_fts, 0, '{_OPEN}', '{_CLOSE}'),
            highlight(chunks_fts, 1, '{_OPEN}', '{_CLOSE}')
        FROM chunks_fts WHERE chunks_fts MATCH ? AND rowid IN ({marks})
        """,
        [phrase(word), *chunk_ids],
    ).fetchall():
        freq = (text or "").count(_OPEN) * WEIGHTS[0] + (heading or "").count(_OPEN) * WEIGHTS[1]
        length = lengths.get(int(chunk_id), 0)
        shares[int(chunk_id)] = idf * (
            (freq * (K1 + 1.0)) / (freq + K1 * (1 - B + B * length / totals.mean_tokens))
        )
    return shares


def _fts5_top(db: sqlite_utils.Database, words: Sequence[str], wide: int) -> list[tuple[int, float]]:
    match = " OR ".join(phrase(w) for w in words)
    return [(int(r[0]), -float(r[1])) for r in db.execute(_RANKED, [match, wide]).fetchall()]
