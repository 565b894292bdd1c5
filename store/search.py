"""Hybrid search: FTS5 BM25 and exact vector candidates fused by reciprocal rank fusion.

The user's words never reach FTS5 as syntax: they are split into words, each quoted, and
OR-ed (BM25 then ranks documents matching more and rarer words first).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import sqlite_utils

from .bm25_arrays import Bm25Arrays
from .bm25_rare_first import POSTINGS_BUDGET, ranked_rows
from .library_types import SearchHit

RRF_K = 60
CANDIDATES = 50
# The vector list's weight beside the two BM25 lists (chunk and whole document, 1 each) in the
# default fusion: chosen on NFCorpus dev (1.0 scored 0.3266, 1.5 0.3282, 2.0 0.3275 nDCG@10),
# and above the two-list fusion on NFCorpus test and SQuAD too (bench/fusion_levers_bench.py).
WHOLE_VECTOR_WEIGHT = 1.5
_MAX_TERMS = 32
_WORD = re.compile(r"\w+", re.UNICODE)

# Only dropped when the query has other words: they match nearly every chunk and slow BM25.
STOPWORDS = frozenset(
    ["a", "an", "and", "are", "as", "at", "be", "but", "by", "can", "did", "do", "does", "for", "from", "had", "has", "have", "how", "i", "if", "in", "into", "is", "it", "its", "me", "my", "no", "not", "of", "on", "or", "our", "so", "than", "that", "the", "their", "them", "then", "there", "these", "they", "this", "to", "too", "was", "we", "were", "what", "when", "where", "which", "who", "whom", "why", "will", "with", "would", "you", "your"]
)


@dataclass(frozen=True)
class Candidate:
    """A chunk's place in the fused list."""

    chunk_id: int
    score: float
    bm25_score: float | None = None
    bm25_rank: int | None = None
    vector_score: float | None = None
    vector_rank: int | None = None


def query_words(text: str) -> list[str]:
    """The distinct lower-case words of free text that BM25 searches for (stopwords dropped)."""
    words = [w.lower() for w in _WORD.findall(text)]
    kept = [w for w in words if w not in STOPWORDS] or words
    return list(dict.fromkeys(kept))[:_MAX_TERMS]


def fts_query(text: str) -> str | None:
    """An FTS5 MATCH expression for free text: quoted words joined by OR, or None if no words."""
    unique = query_words(text)
    if not unique:
        return None
    # Double quotes make each word a string literal; \w+ cannot contain a quote to escape.
    return " OR ".join(f'"{w}"' for w in unique)


def bm25_candidates(
    db: sqlite_utils.Database,
    query: str,
    collection_ids: Sequence[int],
    limit: int = CANDIDATES,
    budget: int | None = POSTINGS_BUDGET,
    arrays: Bm25Arrays | None = None,
) -> list[tuple[int, float]]:
    """Top ``limit`` chunks by BM25 among ``collection_ids``: (chunk id, score, higher better).

    FTS5 alone ranks fastest; joining every match to its document first is several times
    slower on big indexes. So the top ``4 × limit`` come from FTS5 alone and are filtered by
    collection and availability; only when the filter leaves too few is the joined query run.
    CROSS JOIN pins the join order: left to itself, SQLite's planner starts from the
    collection's documents and walks every chunk of them (measured 10× slower at 100k chunks).
    The FTS5-alone ranking reads the rarest words first when the query's words have more than
    ``budget`` postings (``bm25_rare_first``; None ranks them all, exactly, as before), and
    scores big queries in numpy from the index's instances when given ``arrays`` (``bm25_arrays``).
    """
    match = fts_query(query)
    if match is None or not collection_ids:
        return []
    # bm25() weights: chunk text 1.0, its heading 0.5. FTS5 returns lower-is-better scores.
    wide = limit * 4
    ranked = ranked_rows(db, query_words(query), wide, budget, arrays)
    rows = [(cid, -score) for cid, score in ranked.rows]
    if not rows:
        return []
    marks = ",".join("?" * len(collection_ids))
    id_marks = ",".join("?" * len(rows))
    keep = {
        r[0]
        for r in db.execute(
            f"""
            SELECT c.id FROM chunks c CROSS JOIN documents d ON d.id = c.document_id
            WHERE c.id IN ({id_marks}) AND d.collection_id IN ({marks})
                AND d.state != 'unavailable'
            """,
            [*(r[0] for r in rows), *collection_ids],
        ).fetchall()
    }
    if len(keep) < min(limit, len(rows)) and len(rows) == wide:
        rows = db.execute(
            f"""
            SELECT f.rowid, bm25(chunks_fts, 1.0, 0.5) AS s
            FROM chunks_fts f
            CROSS JOIN chunks c ON c.id = f.rowid
            CROSS JOIN documents d ON d.id = c.document_id
            WHERE chunks_fts MATCH ? AND d.collection_id IN ({marks})
                AND d.state != 'unavailable'
            ORDER BY s LIMIT ?
            """,
            [match, *collection_ids, limit],
        ).fetchall()
        keep = {r[0] for r in rows}
    return [(int(r[0]), -float(r[1])) for r in rows if r[0] in keep][:limit]


def rrf_fuse(
    bm25: Sequence[tuple[int, float]],
    vector: Sequence[tuple[int, float]],
    k: int = RRF_K,
    bm25_weight: float = 1.0,
    vector_weight: float = 1.0,
) -> list[Candidate]:
    """Reciprocal rank fusion: score = sum of weight / (k + rank) over the lists a chunk is in."""
    fields: dict[int, dict[str, float | int]] = {}
    for rank, (chunk_id, score) in enumerate(bm25, start=1):
        entry = fields.setdefault(chunk_id, {"score": 0.0})
        entry["score"] = float(entry["score"]) + bm25_weight / (k + rank)
        entry["bm25_score"], entry["bm25_rank"] = score, rank
    for rank, (chunk_id, score) in enumerate(vector, start=1):
        entry = fields.setdefault(chunk_id, {"score": 0.0})
        entry["score"] = float(entry["score"]) + vector_weight / (k + rank)
        entry["vector_score"], entry["vector_rank"] = score, rank
    fused = [
        Candidate(
            chunk_id=cid,
            score=float(f["score"]),
            bm25_score=_opt_float(f.get("bm25_score")),
            bm25_rank=_opt_int(f.get("bm25_rank")),
            vector_score=_opt_float(f.get("vector_score")),
            vector_rank=_opt_int(f.get("vector_rank")),
        )
        for cid, f in fields.items()
    ]
    # Ties (same fused score) go to the better best-rank, then the lower id: stable results.
    fused.sort(key=lambda c: (-c.score, min(c.bm25_rank or 10**9, c.vector_rank or 10**9), c.chunk_id))
    return fused


def fuse_documents(
    bm25: Sequence[tuple[int, float]],
    vector: Sequence[tuple[int, float]],
    document_of: Mapping[int, int],
    k: int = RRF_K,
    bm25_weight: float = 1.0,
    vector_weight: float = 1.0,
    whole: Sequence[tuple[int, float]] = (),
    whole_weight: float = 1.0,
    stand_ins: Mapping[int, Candidate] | None = None,
) -> list[Candidate]:
    """Reciprocal rank fusion of documents: each document's best chunk, then the other chunks.

    Fusing chunk lists gives a document both lists' votes only when one chunk tops both; a
    document whose title chunk BM25 finds and whose body chunk the vector finds gets neither
    vote twice and falls behind a document with one middling chunk. So each list is read as a
    ranking of documents (a document ranks where its best chunk ranks: MaxP) and the document
    rankings are fused by RRF, as whole-document retrieval would. ``whole`` is a third ranking
    made of documents themselves ((document id, score) by whole-document BM25); a document only
    it found is shown by its chunk in ``stand_ins`` (document id -> candidate) or left out.

    The result lists every document once, best first, by its best chunk in the chunk-level
    fusion, scored with the document's fused score; the documents' other chunks follow in
    chunk-level order with their chunk-level scores (so the first hits come from different
    documents). Chunks not in ``document_of`` (deleted since the candidates were taken) are
    dropped.
    """
    fused = [c for c in rrf_fuse(bm25, vector, k, bm25_weight, vector_weight) if c.chunk_id in document_of]
    documents, bm25_places, whole_places = _document_scores(
        bm25, vector, document_of, k, bm25_weight, vector_weight, whole, whole_weight
    )
    best: dict[int, Candidate] = {}
    rest: list[Candidate] = []
    for cand in fused:
        doc = document_of[cand.chunk_id]
        if doc in best:
            rest.append(cand)
        else:
            best[doc] = replace(cand, score=documents[doc])
    for doc in whole_places:
        if doc not in best and stand_ins and doc in stand_ins:
            best[doc] = replace(stand_ins[doc], score=documents[doc])
    # Equal weights tie often (ranks 1 and 3 against 3 and 1): the better BM25 rank wins, then
    # chunk-level order (a stable sort). Chosen on NFCorpus dev (+0.005 nDCG@10 over chunk order)
    # and borne out on SQuAD paragraphs (+0.008), where BM25 is the stronger list.
    unranked = 10**9
    leaders = sorted(
        best.items(),
        key=lambda item: (-item[1].score, bm25_places.get(item[0], unranked),
                          whole_places.get(item[0], unranked)),
    )
    return [cand for _, cand in leaders] + rest


def documents_to_show(
    bm25: Sequence[tuple[int, float]],
    vector: Sequence[tuple[int, float]],
    document_of: Mapping[int, int],
    whole: Sequence[tuple[int, float]],
    top: int,
    k: int = RRF_K,
    bm25_weight: float = 1.0,
    vector_weight: float = 1.0,
    whole_weight: float = 1.0,
) -> list[int]:
    """Documents among the fused top ``top`` that only ``whole`` found: they need a stand-in chunk.

    Ties are counted in (a tied document may make the top), so this may name a few too many.
    """
    documents, _, _ = _document_scores(
        bm25, vector, document_of, k, bm25_weight, vector_weight, whole, whole_weight
    )
    if len(documents) > top:
        floor = sorted(documents.values(), reverse=True)[top - 1]
        documents = {doc: score for doc, score in documents.items() if score >= floor}
    shown = set(document_of.values())
    return [doc for doc, _ in whole if doc in documents and doc not in shown]


def _document_scores(
    bm25: Sequence[tuple[int, float]],
    vector: Sequence[tuple[int, float]],
    document_of: Mapping[int, int],
    k: int,
    bm25_weight: float,
    vector_weight: float,
    whole: Sequence[tuple[int, float]],
    whole_weight: float,
) -> tuple[dict[int, float], dict[int, int], dict[int, int]]:
    """Each document's fused score, and its places in the chunk BM25 and whole-document lists."""
    documents: dict[int, float] = {}
    bm25_places: dict[int, int] = {}
    whole_places: dict[int, int] = {}
    for weight, ranked, places in ((bm25_weight, bm25, bm25_places), (vector_weight, vector, {})):
        for chunk_id, _ in ranked:
            doc = document_of.get(chunk_id)
            if doc is None or doc in places:
                continue
            places[doc] = len(places) + 1
            documents[doc] = documents.get(doc, 0.0) + weight / (k + places[doc])
    for doc, _ in whole:
        if doc not in whole_places:
            whole_places[doc] = len(whole_places) + 1
            documents[doc] = documents.get(doc, 0.0) + whole_weight / (k + whole_places[doc])
    return documents, bm25_places, whole_places


def chunk_documents(db: sqlite_utils.Database, chunk_ids: Sequence[int]) -> dict[int, int]:
    """The document of each of ``chunk_ids`` that still exists: chunk id -> document id."""
    ids = list(dict.fromkeys(chunk_ids))
    if not ids:
        return {}
    rows = db.execute(
        f"SELECT id, document_id FROM chunks WHERE id IN ({','.join('?' * len(ids))})", ids
    ).fetchall()
    return {int(r[0]): int(r[1]) for r in rows}


def load_hits(db: sqlite_utils.Database, fused: Sequence[Candidate], k: int) -> list[SearchHit]:
    """The top ``k`` fused candidates as hits, dropping chunks that overlap a better hit."""
    if not fused or k <= 0:
        return []
    ids = [c.chunk_id for c in fused]
    marks = ",".join("?" * len(ids))
    rows = db.execute(
        f"""
        SELECT c.id, c.text, c.page, c.char_start, c.char_end, c.heading, d.id, d.path, co.name
        FROM chunks c CROSS JOIN documents d ON d.id = c.document_id
        CROSS JOIN collections co ON co.id = d.collection_id
        WHERE c.id IN ({marks})
        """,
        ids,
    ).fetchall()
    by_id = {r[0]: r for r in rows}
    hits: list[SearchHit] = []
    for cand in fused:
        row = by_id.get(cand.chunk_id)
        if row is None:  # removed since the candidates were taken
            continue
        hit = SearchHit(
            chunk_id=row[0], text=row[1], page=row[2], char_start=row[3], char_end=row[4],
            heading=row[5], document_id=row[6], path=row[7], collection=row[8],
            score=cand.score, bm25_score=cand.bm25_score, bm25_rank=cand.bm25_rank,
            vector_score=cand.vector_score, vector_rank=cand.vector_rank,
        )
        if any(_overlaps(hit, kept) for kept in hits):
            continue
        hits.append(hit)
        if len(hits) == k:
            break
    return hits


def _overlaps(a: SearchHit, b: SearchHit) -> bool:
    """Same document, same page and intersecting character ranges (chunk overlap)."""
    return (
        a.document_id == b.document_id
        and a.page == b.page
        and a.char_start < b.char_end
        and b.char_start < a.char_end
    )


def _opt_float(value: float | int | None) -> float | None:
    return None if value is None else float(value)


def _opt_int(value: float | int | None) -> int | None:
    return None if value is None else int(value)
