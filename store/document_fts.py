"""Whole-document BM25: one FTS5 row per indexed document, beside the chunk index.

BM25 over whole documents sees what a chunk index cannot: a document whose query words are
split across chunks, and length normalised over the document rather than the chunk (on NFCorpus
dev it beats chunk BM25, 0.2946 against 0.2887 nDCG@10). Search fuses it as a third document
ranking (``search.fuse_documents``).

``document_texts`` holds each indexed document's text, rebuilt from its chunks (their page
slices with the overlap taken out), and ``documents_fts`` indexes it (external content, kept in
step by triggers). Deleting any chunk of a document deletes its text (a trigger), so every path
that drops chunks — a re-index, a skipped or failed file, a rebuild, a deleted document or
collection — drops the document's row too; ``write_document_text`` adds it back when a
document's new chunks are swapped in, in the same transaction.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import sqlite_utils

from .bm25_rare_first import phrase
from .search import CANDIDATES, Candidate, fts_query, query_words
from .vector_index import rescore

# Chunk rows as stored: (page, char_start, char_end, text), in ordinal order.
ChunkRow = tuple[int | None, int, int, str]
# Postings the whole-document ranking may score in one search. FTS5 ranks ~2 µs a posting
# here as for chunks, and this list runs after the chunk BM25 on the same thread; past the
# budget its commonest words are left out of it (the chunk BM25 list still counts them).
# NFCorpus dev nDCG@10 with 5,000 / 2,000 / 1,000: 0.3282 / 0.3282 / 0.3277; at 1M chunks
# (search_bench) this list's p50 is 5.1 / 3.8 / 3.1 ms.
DOCUMENT_POSTINGS_BUDGET = 2_000


def document_text(chunks: Iterable[ChunkRow]) -> str:
    """A document's text from its chunks: each chunk's part past the one before it on its page.

    Consecutive chunks overlap by a few sentences; counting those words twice would raise their
    term frequencies and the document's length. Separate pieces are joined by a line break.
    """
    pieces: list[str] = []
    page: int | None = None
    end = -1
    for chunk_page, start, stop, text in chunks:
        if pieces and chunk_page == page and start < end:
            if stop > end:
                pieces[-1] += text[end - start:]
                end = stop
            continue
        pieces.append(text)
        page, end = chunk_page, stop
    return "\n".join(pieces)


def write_document_text(db: sqlite_utils.Database, document_id: int) -> None:
    """(Re)write ``document_id``'s whole-document row from its chunks as they stand now.

    Called inside the transaction that swaps a document's chunks in; a document without chunks
    gets no row.
    """
    rows = db.execute(
        "SELECT page, char_start, char_end, text FROM chunks WHERE document_id = ? ORDER BY ordinal",
        [document_id],
    ).fetchall()
    db.execute("DELETE FROM document_texts WHERE document_id = ?", [document_id])
    if rows:
        db.execute(
            "INSERT INTO document_texts (document_id, text) VALUES (?, ?)",
            [document_id, document_text(rows)],
        )


def write_all_document_texts(db: sqlite_utils.Database) -> int:
    """Write the whole-document row of every document that has chunks (a migration, a bench).

    Returns:
        How many documents were written.
    """
    ids = [int(r[0]) for r in db.execute("SELECT DISTINCT document_id FROM chunks").fetchall()]
    for document_id in ids:
        write_document_text(db, document_id)
    return len(ids)


def document_candidates(
    db: sqlite_utils.Database,
    query: str,
    collection_ids: Sequence[int],
    limit: int = CANDIDATES,
) -> list[tuple[int, float]]:
    """Top ``limit`` documents by whole-document BM25: (document id, score, higher better).

    Filtered like ``search.bm25_candidates``: only the searched collections' documents that are
    not unavailable. The top ``4 × limit`` come from FTS5 alone; the joined query runs only when
    the filter leaves too few. When the query's words hold more than
    ``DOCUMENT_POSTINGS_BUDGET`` postings, only the rarest words within it are ranked.
    """
    match = rarest_words_match(db, query)
    if match is None or not collection_ids:
        return []
    wide = limit * 4
    rows = db.execute(
        "SELECT rowid, bm25(documents_fts) AS s FROM documents_fts WHERE documents_fts MATCH ? "
        "ORDER BY s LIMIT ?",
        [match, wide],
    ).fetchall()
    if not rows:
        return []
    marks = ",".join("?" * len(collection_ids))
    # The unary + keep SQLite on the primary key: left to itself it walks the collection's
    # documents by the (collection_id, state) index, ~10 ms at 50,000 documents.
    keep = {
        r[0]
        for r in db.execute(
            f"SELECT id FROM documents WHERE id IN ({','.join('?' * len(rows))}) "
            f"AND +collection_id IN ({marks}) AND +state != 'unavailable'",
            [*(r[0] for r in rows), *collection_ids],
        ).fetchall()
    }
    if len(keep) < min(limit, len(rows)) and len(rows) == wide:
        rows = db.execute(
            f"""
            SELECT f.rowid, bm25(documents_fts) AS s
            FROM documents_fts f CROSS JOIN documents d ON d.id = f.rowid
            WHERE documents_fts MATCH ? AND d.collection_id IN ({marks})
                AND d.state != 'unavailable'
            ORDER BY s LIMIT ?
            """,
            [match, *collection_ids, limit],
        ).fetchall()
        keep = {r[0] for r in rows}
    return [(int(r[0]), -float(r[1])) for r in rows if r[0] in keep][:limit]


def rarest_words_match(
    db: sqlite_utils.Database, query: str, budget: int = DOCUMENT_POSTINGS_BUDGET
) -> str | None:
    """The FTS5 MATCH of the query's words whose postings fit ``budget``, rarest first.

    Counting a word's documents costs ~0.1 µs a posting, ranking ~2-3 µs. When even the
    commonest case fits (documents × words ≤ budget) nothing is counted. The rarest word is
    always kept.
    """
    words = query_words(query)
    if not words:
        return None
    # The highest id bounds the row count without walking the table.
    documents = int(db.execute("SELECT COALESCE(MAX(document_id), 0) FROM document_texts").fetchone()[0])
    if documents * len(words) > budget:
        counts = sorted(
            (int(db.execute("SELECT COUNT(*) FROM documents_fts WHERE documents_fts MATCH ?",
                            [phrase(w)]).fetchone()[0]), n, w)
            for n, w in enumerate(words)
        )
        kept: list[tuple[int, str]] = []
        total = 0
        for count, n, word in counts:
            if kept and total + count > budget:
                break
            kept.append((n, word))
            total += count
        words = [w for _, w in sorted(kept)]
    return " OR ".join(phrase(w) for w in words)


def stand_in_chunks(
    db: sqlite_utils.Database,
    query: str,
    document_ids: Sequence[int],
    query_vectors: Mapping[int, np.ndarray],
) -> dict[int, Candidate]:
    """For documents only the whole-document list found: each one's chunk to show, by chunk BM25.

    A document can match the query's words only across its chunks, so its best chunk by BM25
    (the chunk index's own scores) stands in for it, with its cosine to the query vector of its
    collection (``query_vectors``: collection id -> vector) so that relevance floors judge it
    like any other hit. A document none of whose chunks holds a query word gets its first chunk.
    Neither rank is set: the chunk was in neither chunk list.
    """
    ids = list(dict.fromkeys(document_ids))
    match = fts_query(query)
    if not ids or match is None:
        return {}
    rows = db.execute(
        f"SELECT c.id, c.document_id, d.collection_id FROM chunks c "
        f"CROSS JOIN documents d ON d.id = c.document_id "
        f"WHERE c.document_id IN ({','.join('?' * len(ids))}) ORDER BY c.document_id, c.ordinal",
        ids,
    ).fetchall()
    owner = {int(r[0]): (int(r[1]), int(r[2])) for r in rows}
    if not owner:
        return {}
    chunk_ids = list(owner)
    scores = {
        int(r[0]): -float(r[1])
        for r in db.execute(
            f"SELECT rowid, bm25(chunks_fts, 1.0, 0.5) FROM chunks_fts WHERE chunks_fts MATCH ? "
            f"AND rowid IN ({','.join('?' * len(chunk_ids))})",
            [match, *chunk_ids],
        ).fetchall()
    }
    chosen: dict[int, int] = {}
    for chunk_id, (doc, _) in owner.items():  # ordinal order: the first chunk wins ties
        if doc not in chosen or scores.get(chunk_id, -np.inf) > scores.get(chosen[doc], -np.inf):
            chosen[doc] = chunk_id
    cosines: dict[int, float] = {}
    for collection, vector in query_vectors.items():
        mine = [c for c in chosen.values() if owner[c][1] == collection]
        cosines.update(rescore(db, mine, vector, len(mine)))
    return {
        doc: Candidate(chunk_id=chunk_id, score=0.0, bm25_score=scores.get(chunk_id),
                       vector_score=cosines.get(chunk_id))
        for doc, chunk_id in chosen.items()
    }
