"""FTS5's BM25, computed in numpy from the index's own word instances: same scores, ~1/4 the cost.

FTS5 ranks a query by calling ``bm25()`` once per matching row, ~2.7 µs a row at 1M chunks on
the 2-core reference machine; most of that is the auxiliary-function call, not reading the
index. The index's instances of one word can be read in bulk through an ``fts5vocab`` table
(``instance`` type: row, column and offset of every instance) at ~0.15 µs each; here they come
back as one comma-joined string that numpy parses, ~0.6 µs an instance in all. With each row's
length (from FTS5's docsize table, cached) and the index totals (FTS5's averages record), every
row's score is FTS5's own formula with FTS5's own inputs, so the scores are FTS5's, up to the
order of floating-point additions (``tests/store/test_bm25_arrays.py`` compares them).

Query words are turned into index terms by FTS5's own tokenizer (an in-memory FTS5 table with
the chunk table's tokenizer, and its ``fts5vocab``), so Porter stems and folded diacritics match
exactly; a word that is not exactly one token (``foo_bar`` is two) is left to FTS5's own ranking.

The row lengths are cached as one array indexed by row id and read again whenever FTS5's
structure record changes. FTS5 rewrites that record whenever a transaction's writes reach the
index (each adds a segment), so a changed, deleted or re-used row id is never scored with a
stale length; the lengths, the totals and the instances are read in one snapshot. Reading the
lengths again costs ~1 s at 1M chunks, ~0.1 s at 100k, once after each change. Inside an open
transaction FTS5's own pending writes are not in that record yet, so there ``terms`` declines
and FTS5 ranks the query itself.

The vocabulary table is a temp table of the library's connection, so one ``Bm25Arrays`` serves
one connection, on that connection's thread.
"""

from __future__ import annotations

import math
import re
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import numpy as np
import sqlite_utils
from numpy.typing import NDArray

# FTS5's bm25() constants (fts5_aux.c) and the chunk index's column weights: text, heading.
K1 = 1.2
B = 0.75
HEADING_WEIGHT = 0.5
# Row ids in FTS5's %_data table: the averages record and the structure record.
AVERAGES_ID = 1
STRUCTURE_ID = 10
_TOKENIZE = re.compile(r"tokenize\s*=\s*'([^']*)'", re.IGNORECASE)


class Bm25Arrays:
    """BM25 over ``chunks_fts`` in numpy, for the connection it was made with."""

    def __init__(self, db: sqlite_utils.Database) -> None:
        self._db = db
        self._ready: bool | None = None  # None: temp tables not tried yet; False: unavailable
        self._stamp: bytes | None = None
        self._lengths: NDArray[np.uint32] = np.zeros(0, np.uint32)
        self._totals: tuple[int, float] = (0, 0.0)
        self._words: sqlite3.Connection | None = None  # private, for FTS5's tokenizer

    def close(self) -> None:
        """Close the private tokenizer database (the library's connection is the caller's)."""
        if self._words is not None:
            self._words.close()
            self._words = None
        self._ready = None

    def terms(self, words: Sequence[str]) -> list[str] | None:
        """Each word's index term by FTS5's tokenizer, or None if any word is not one token.

        None as well inside a transaction on the library's connection: FTS5 keeps that
        transaction's writes in memory, out of the structure record that dates the cache.
        """
        if not words or self._db.conn.in_transaction or not self._prepare():
            return None
        words_db = self._words
        assert words_db is not None  # made by _prepare()
        words_db.execute("DELETE FROM words")
        words_db.executemany("INSERT INTO words (rowid, word) VALUES (?, ?)", list(enumerate(words)))
        found: list[list[str]] = [[] for _ in words]
        for row, term in words_db.execute("SELECT doc, term FROM words_terms"):
            found[int(row)].append(str(term))
        if any(len(t) != 1 for t in found):
            return None
        return [t[0] for t in found]

    def top(self, terms: Sequence[str], wide: int) -> list[tuple[int, float]]:
        """The ``wide`` best rows for the terms OR-ed: (row id, score), best first.

        The score is FTS5's ``bm25()`` with its sign turned, so higher is better.

        Ties are broken by row id. A term given twice counts twice, as two phrases do in FTS5.
        """
        if not terms or wide <= 0:
            return []
        if not self._prepare():
            raise RuntimeError("This SQLite has no fts5vocab: terms() declines every query.")
        ids: list[NDArray[np.int64]] = []
        shares: list[NDArray[np.float64]] = []
        # One read snapshot: the lengths, totals and instances all describe the same index.
        with _snapshot(self._db.conn):
            lengths, (rows, mean_tokens) = self._current()
            if rows <= 0 or mean_tokens <= 0.0:
                return []
            for term in terms:
                row_ids, share = self._shares(term, lengths, rows, mean_tokens)
                ids.append(row_ids)
                shares.append(share)
        all_ids = np.concatenate(ids)
        if all_ids.size == 0:
            return []
        # Stable sort by row: each row's shares stay in the query's word order, FTS5's order.
        order = np.argsort(all_ids, kind="stable")
        all_ids = all_ids[order]
        starts = np.flatnonzero(np.r_[True, all_ids[1:] != all_ids[:-1]])
        row_ids = all_ids[starts]
        scores = np.add.reduceat(np.concatenate(shares)[order], starts)
        keep = min(wide, row_ids.size)
        best = np.argpartition(-scores, keep - 1)[:keep]
        best = best[np.lexsort((row_ids[best], -scores[best]))]
        return [(int(row_ids[i]), float(scores[i])) for i in best]

    def row_lengths(self, row_ids: Sequence[int]) -> dict[int, int]:
        """Each row's length in tokens, all columns, from the cache (rows since deleted: none)."""
        with _snapshot(self._db.conn):
            lengths, _ = self._current()
        return {int(i): int(lengths[i]) for i in row_ids if 0 <= i < lengths.size and lengths[i]}

    def _shares(
        self, term: str, lengths: NDArray[np.uint32], rows: int, mean_tokens: float
    ) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
        """Every row holding ``term`` and the term's share of its score (fts5Bm25Function)."""
        joined = self._db.conn.execute(
            "SELECT group_concat(doc * 2 + (col = 'heading')) FROM temp.bm25_instances "
            "WHERE term = ?",
            [term],
        ).fetchone()[0]
        if not joined:
            return np.zeros(0, np.int64), np.zeros(0, np.float64)
        codes = np.fromstring(joined, dtype=np.int64, sep=",")
        row_of = codes >> 1
        # Instances come grouped by row (the index stores them so); each row's first is a start.
        starts = np.flatnonzero(np.r_[True, row_of[1:] != row_of[:-1]])
        row_ids = row_of[starts]
        freq = np.add.reduceat(np.where(codes & 1, HEADING_WEIGHT, 1.0), starts)
        hits = row_ids.size
        idf = math.log((rows - hits + 0.5) / (hits + 0.5))
        if idf <= 0.0:
            idf = 1e-6
        row_tokens = lengths[row_ids].astype(np.float64)
        share = idf * ((freq * (K1 + 1.0)) / (freq + K1 * (1 - B + B * row_tokens / mean_tokens)))
        return row_ids, share

    def _current(self) -> tuple[NDArray[np.uint32], tuple[int, float]]:
        """The row lengths and index totals, read again if the index changed since."""
        conn = self._db.conn
        row = conn.execute(
            "SELECT block FROM chunks_fts_data WHERE id = ?", [STRUCTURE_ID]
        ).fetchone()
        stamp = bytes(row[0]) if row and row[0] is not None else b""
        if stamp != self._stamp:
            self._lengths = read_lengths(conn)
            self._totals = read_totals(conn)
            self._stamp = stamp
        return self._lengths, self._totals

    def _prepare(self) -> bool:
        if self._ready is None:
            self._ready = self._create_tables()
        return self._ready

    def _create_tables(self) -> bool:
        """The vocabulary table on the library's connection; the tokenizer on a private one.

        The words are tokenized in a private in-memory database so that no write, not even to a
        temp table, ever opens a transaction on the library's connection.
        """
        conn = self._db.conn
        sql = conn.execute(
            "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'chunks_fts'"
        ).fetchone()
        match = _TOKENIZE.search(sql[0]) if sql else None
        tokenize = match.group(1) if match else "unicode61"
        try:
            conn.execute(
                "CREATE VIRTUAL TABLE IF NOT EXISTS temp.bm25_instances "
                "USING fts5vocab(main, chunks_fts, instance)"
            )
            words_db = sqlite3.connect(":memory:", isolation_level=None)
            words_db.execute(f"CREATE VIRTUAL TABLE words USING fts5(word, tokenize='{tokenize}')")
            words_db.execute("CREATE VIRTUAL TABLE words_terms USING fts5vocab(words, instance)")
        except sqlite3.Error:
            return False  # no fts5vocab here: FTS5 ranks every query itself
        self._words = words_db
        return True


@contextmanager
def _snapshot(conn: sqlite3.Connection) -> Iterator[None]:
    """Run the block's reads in one read transaction (or in the caller's, if one is open)."""
    if conn.in_transaction:
        yield
        return
    conn.execute("BEGIN")
    try:
        yield
    finally:
        conn.execute("COMMIT")


def read_totals(conn: sqlite3.Connection) -> tuple[int, float]:
    """Row count and mean row length in tokens (all columns), from FTS5's averages record."""
    row = conn.execute("SELECT block FROM chunks_fts_data WHERE id = ?", [AVERAGES_ID]).fetchone()
    values = decode_varints(bytes(row[0])) if row and row[0] else []
    if not values or values[0] <= 0:
        return 0, 0.0
    return values[0], sum(values[1:]) / values[0]


def read_lengths(conn: sqlite3.Connection) -> NDArray[np.uint32]:
    """Every row's length in tokens, all columns summed, indexed by row id (0 for no row).

    The array runs to the highest row id: 4 bytes a row id, deleted ones included.

    FTS5's docsize table holds one blob per row: a varint per column. The blobs are fetched as
    three strings (ids, blob sizes, hex) and decoded in numpy, not row by row in Python.
    """
    ids_text, sizes_text, hex_text = conn.execute(
        "SELECT group_concat(id), group_concat(length(sz)), group_concat(hex(sz), '') "
        "FROM chunks_fts_docsize"
    ).fetchone()
    if not ids_text:
        return np.zeros(0, np.uint32)
    ids = np.fromstring(ids_text, dtype=np.int64, sep=",")
    sizes = np.fromstring(sizes_text, dtype=np.int64, sep=",")
    data = np.frombuffer(bytes.fromhex(hex_text), np.uint8)
    # A varint's last byte has its high bit clear; each byte adds 7 bits by its place from there.
    last = (data & 0x80) == 0
    last_at = np.flatnonzero(last)
    varint_of = np.cumsum(last) - last
    place = last_at[varint_of] - np.arange(data.size)
    blob_of = np.repeat(np.arange(ids.size), sizes)
    values = (data & 0x7F).astype(np.float64) * np.exp2(7.0 * place)
    totals = np.bincount(blob_of, weights=values, minlength=ids.size)
    lengths = np.zeros(int(ids.max()) + 1, np.uint32)
    lengths[ids] = totals.astype(np.uint32)
    return lengths


def decode_varints(data: bytes) -> list[int]:
    """SQLite's big-endian varints (7 bits a byte, the ninth byte whole), as FTS5 stores them."""
    values: list[int] = []
    i = 0
    while i < len(data):
        value = 0
        for n in range(9):
            byte = data[i]
            i += 1
            if n == 8:
                value = (value << 8) | byte
                break
            value = (value << 7) | (byte & 0x7F)
            if not byte & 0x80:
                break
        values.append(value)
    return values
