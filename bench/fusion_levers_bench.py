"""Search-quality levers, one at a time, re-scored from an index nfcorpus_bench.py built.

Usage:
    .venv/bin/python bench/fusion_levers_bench.py --data PATH --workdir DIR [--splits dev,test]
        [--only REGEX]

Reads ``DIR/library.db`` (chunks, FTS5, stored vectors) and ``DIR/queries-*.npz`` (query vectors
cached by nfcorpus_bench.py) read-only, and ranks documents by each variant without re-embedding:
the BM25 lists come from the index's own FTS5 table, the vector lists from exact search over the
stored vectors, and the shipped fusion is ``store.search.fuse_documents`` itself. Levers that would
change what is indexed (title context in chunk vectors) are simulated from the stored vectors.
The whole-document BM25 lists come from an in-memory FTS5 table over the corpus records (one
column holding "title" + blank line + "text", as the indexed files do, or title and text as two
columns); ``--only grid`` re-scores the three-list fusion's weights on a grid.
Only indexed documents count (a partial index scores what it holds). nDCG@10, linear gains.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sqlite3
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

import bastion.desktop  # noqa: F401 - offline environment first
from bastion.store.search import RRF_K, WHOLE_VECTOR_WEIGHT, Candidate, fts_query, fuse_documents

Ranked = list[tuple[int, float]]


def rrf(lists: list[Ranked], weights: tuple[float, ...] = (1.0, 1.0, 1.0), k: int = RRF_K) -> list[int]:
    """Plain RRF of ranked id lists; ties keep first-seen order (the first list wins)."""
    scores: dict[int, float] = defaultdict(float)
    for weight, ranked in zip(weights, lists, strict=False):
        for place, (key, _) in enumerate(ranked, start=1):
            scores[key] += weight / (k + place)
    return sorted(scores, key=lambda key: -scores[key])


class Index:
    """The stored index in memory: chunk vectors, their documents, FTS5 for BM25."""

    def __init__(self, workdir: Path, data: Path) -> None:
        self.db = sqlite3.connect(f"file:{workdir / 'library.db'}?mode=ro", uri=True)
        rows = self.db.execute(
            "SELECT c.id, c.document_id, d.path, e.vector FROM chunks c "
            "JOIN documents d ON d.id = c.document_id JOIN embeddings e ON e.chunk_id = c.id "
            "ORDER BY c.document_id, c.ordinal"
        ).fetchall()
        self.chunk_ids = np.array([r[0] for r in rows], dtype=np.int64)
        self.chunk_doc = np.array([r[1] for r in rows], dtype=np.int64)
        self.name = {int(r[1]): Path(r[2]).stem for r in rows}
        self.vectors = np.stack([np.frombuffer(r[3], dtype="<f4") for r in rows])
        self.owner = dict(zip(self.chunk_ids.tolist(), self.chunk_doc.tolist(), strict=True))
        self.first_row: dict[int, int] = {}
        for row, doc in enumerate(self.chunk_doc.tolist()):
            self.first_row.setdefault(doc, row)
        self.doc_ids = list(self.first_row)
        sums = np.zeros((len(self.doc_ids), self.vectors.shape[1]), dtype=np.float32)
        where = {doc: n for n, doc in enumerate(self.doc_ids)}
        np.add.at(sums, [where[d] for d in self.chunk_doc.tolist()], self.vectors)
        self.doc_mean = sums / np.linalg.norm(sums, axis=1, keepdims=True)
        self.doc_first = self.vectors[[self.first_row[d] for d in self.doc_ids]]
        records = {}
        with (data / "corpus.jsonl").open(encoding="utf-8") as handle:
            for line in handle:
                record = json.loads(line)
                records[record["_id"]] = record
        self.whole = sqlite3.connect(":memory:")
        self.whole.execute(
            "CREATE VIRTUAL TABLE d USING fts5(title, text, tokenize='porter unicode61 remove_diacritics 2')"
        )
        self.whole.executemany(
            "INSERT INTO d (rowid, title, text) VALUES (?, ?, ?)",
            [(d, records[self.name[d]].get("title", ""), records[self.name[d]].get("text", ""))
             for d in self.doc_ids],
        )
        # One column holding the text as the library parses the file ("title" + blank line +
        # "text", as nfcorpus_bench.py writes it): what a document-level FTS5 table would hold.
        self.whole.execute(
            "CREATE VIRTUAL TABLE w USING fts5(text, tokenize='porter unicode61 remove_diacritics 2')"
        )
        self.whole.executemany(
            "INSERT INTO w (rowid, text) VALUES (?, ?)",
            [(d, f"{records[self.name[d]].get('title', '')}\n\n{records[self.name[d]].get('text', '')}\n")
             for d in self.doc_ids],
        )
        self._bm25: dict[tuple[str, int, str], Ranked] = {}

    def bm25_chunks(self, query: str, limit: int, weights: str = "1.0, 0.5") -> Ranked:
        key = (query, limit, "c" + weights)
        if key not in self._bm25:
            match = fts_query(query)
            self._bm25[key] = [] if match is None else [
                (int(r[0]), -float(r[1])) for r in self.db.execute(
                    f"SELECT rowid, bm25(chunks_fts, {weights}) AS s FROM chunks_fts "
                    "WHERE chunks_fts MATCH ? ORDER BY s LIMIT ?", [match, limit])
                if int(r[0]) in self.owner
            ]
        return self._bm25[key]

    def bm25_documents(self, query: str, limit: int, weights: str = "1.0, 1.0") -> Ranked:
        """BM25 over whole documents, title and text as two columns."""
        key = (query, limit, "d" + weights)
        if key not in self._bm25:
            match = fts_query(query)
            self._bm25[key] = [] if match is None else [
                (int(r[0]), -float(r[1])) for r in self.whole.execute(
                    f"SELECT rowid, bm25(d, {weights}) AS s FROM d WHERE d MATCH ? ORDER BY s LIMIT ?",
                    [match, limit])
            ]
        return self._bm25[key]

    def bm25_whole_text(self, query: str, limit: int) -> Ranked:
        """BM25 over whole documents as one column of the file's text (no title field)."""
        key = (query, limit, "w")
        if key not in self._bm25:
            match = fts_query(query)
            self._bm25[key] = [] if match is None else [
                (int(r[0]), -float(r[1])) for r in self.whole.execute(
                    "SELECT rowid, bm25(w) AS s FROM w WHERE w MATCH ? ORDER BY s LIMIT ?",
                    [match, limit])
            ]
        return self._bm25[key]

    def vector_chunks(self, query: NDArray[np.float32], limit: int,
                      matrix: NDArray[np.float32] | None = None) -> Ranked:
        scores = (self.vectors if matrix is None else matrix) @ query
        order = np.argsort(-scores, kind="stable")[:limit]
        return [(int(self.chunk_ids[i]), float(scores[i])) for i in order]

    def vector_documents(self, query: NDArray[np.float32], matrix: NDArray[np.float32]) -> Ranked:
        scores = matrix @ query
        order = np.argsort(-scores, kind="stable")[:100]
        return [(self.doc_ids[i], float(scores[i])) for i in order]

    def by_document(self, ranked: Ranked, top: int = 1) -> Ranked:
        """Chunks to documents: the sum of a document's ``top`` best chunk scores (1: MaxP)."""
        per: dict[int, list[float]] = defaultdict(list)
        for chunk, score in ranked:
            per[self.owner[chunk]].append(score)
        scored = {doc: sum(sorted(s, reverse=True)[:top]) for doc, s in per.items()}
        return sorted(scored.items(), key=lambda pair: -pair[1])

    def first_documents(self, chunks: list[int]) -> list[int]:
        return list(dict.fromkeys(self.owner[c] for c in chunks if c in self.owner))

    def context_matrix(self, alpha: float, title: bool) -> NDArray[np.float32]:
        """Chunk vectors plus ``alpha`` × their neighbours' (or their document's first chunk's)."""
        out = self.vectors.copy()
        doc = self.chunk_doc
        for row in range(len(out)):
            if title:
                first = self.first_row[int(doc[row])]
                if first != row:
                    out[row] += alpha * self.vectors[first]
                continue
            if row > 0 and doc[row - 1] == doc[row]:
                out[row] += alpha * self.vectors[row - 1]
            if row + 1 < len(out) and doc[row + 1] == doc[row]:
                out[row] += alpha * self.vectors[row + 1]
        normed: NDArray[np.float32] = out / np.linalg.norm(out, axis=1, keepdims=True)
        return normed


def fuse_document_lists(lists: list[tuple[float, list[int]]], k: int = RRF_K) -> list[int]:
    """Weighted RRF of document rankings; ties go to the better place in the first list, then
    the second (as ``fuse_documents`` breaks ties by the BM25 list), then the lower id."""
    scores: dict[int, float] = defaultdict(float)
    places: list[dict[int, int]] = []
    for weight, ranked in lists:
        place = {doc: n for n, doc in enumerate(ranked, start=1)}
        places.append(place)
        for doc, n in place.items():
            scores[doc] += weight / (k + n)
    unranked = 10**9
    return sorted(scores, key=lambda d: (-scores[d], *(p.get(d, unranked) for p in places), d))


def variants(ix: Index) -> dict[str, Callable[[str, NDArray[np.float32]], list[int]]]:
    """Each lever as a function (query text, query vector) -> documents, best first."""
    def shipped(q: str, v: NDArray[np.float32], n: int = 50, wb: float = 1.0,
                matrix: NDArray[np.float32] | None = None, heading: str = "1.0, 0.5") -> list[int]:
        fused = fuse_documents(ix.bm25_chunks(q, n, heading), ix.vector_chunks(v, n, matrix),
                               ix.owner, bm25_weight=wb)
        return ix.first_documents([c.chunk_id for c in fused])

    def prf(q: str, v: NDArray[np.float32], m: int = 5, beta: float = 0.6) -> list[int]:
        top = shipped(q, v)[:m]
        expanded = v + beta * ix.doc_mean[[ix.doc_ids.index(d) for d in top]].mean(axis=0)
        return shipped(q, (expanded / np.linalg.norm(expanded)).astype(np.float32))

    neighbours = ix.context_matrix(0.25, title=False)
    titled = ix.context_matrix(1.0, title=True)
    table: dict[str, Callable[[str, NDArray[np.float32]], list[int]]] = {
        "BM25 only, chunks": lambda q, v: ix.first_documents([c for c, _ in ix.bm25_chunks(q, 50)]),
        "vector only, chunks": lambda q, v: ix.first_documents([c for c, _ in ix.vector_chunks(v, 50)]),
        "chunk-level RRF, 50 each (before)": lambda q, v: ix.first_documents(
            rrf([ix.bm25_chunks(q, 50), ix.vector_chunks(v, 50)])),
        "whole-document RRF: BM25 + mean chunk vector": lambda q, v: rrf(
            [ix.bm25_documents(q, 100), ix.vector_documents(v, ix.doc_mean)]),
        "whole-document RRF: BM25 + first chunk vector": lambda q, v: rrf(
            [ix.bm25_documents(q, 100), ix.vector_documents(v, ix.doc_first)]),
        "document-level RRF, 50 each (two lists; shipped before the whole-document list)": shipped,
        "document-level RRF, 100 each": lambda q, v: shipped(q, v, n=100),
        "aggregation: sum of 2 best chunk scores": lambda q, v: rrf(
            [ix.by_document(ix.bm25_chunks(q, 200), 2), ix.by_document(ix.vector_chunks(v, 200), 2)]),
        "BM25 heading column weight 1.0 (0.5 shipped)": lambda q, v: shipped(q, v, heading="1.0, 1.0"),
        "BM25 title field weight 2 (whole-document BM25 alone)": lambda q, v: [
            d for d, _ in ix.bm25_documents(q, 100, "2.0, 1.0")],
        "BM25 title weight 1 (whole-document BM25 alone)": lambda q, v: [
            d for d, _ in ix.bm25_documents(q, 100, "1.0, 1.0")],
        "neighbouring-chunk context (vectors + 0.25 × neighbours)": lambda q, v: shipped(
            q, v, matrix=neighbours),
        "title context (vectors + first chunk's vector)": lambda q, v: shipped(q, v, matrix=titled),
        "vector pseudo-relevance feedback (5 docs, beta 0.6)": prf,
    }
    for weight in (0.5, 0.75, 1.25, 1.5, 2.0):
        table[f"document-level RRF, BM25 weight {weight}"] = (
            lambda w: lambda q, v: shipped(q, v, wb=w))(weight)

    # A whole-document BM25 list beside the chunk lists (issue 15's last gap): documents ranked
    # by BM25 over their full text, fused at document level with the chunk lists' MaxP rankings.
    def docs_of(ranked: Ranked) -> list[int]:
        return ix.first_documents([c for c, _ in ranked])

    def three(q: str, v: NDArray[np.float32], wc: float = 1.0, wv: float = 1.0, wd: float = 1.0,
              n: int = 50, depth: int = 50, one_column: bool = True, pool: bool = False) -> list[int]:
        chunk_bm25, chunk_vector = docs_of(ix.bm25_chunks(q, n)), docs_of(ix.vector_chunks(v, n))
        if pool:  # whole-document BM25 of the chunk lists' documents only (a bounded cost)
            found = set(chunk_bm25) | set(chunk_vector)
            whole = [pair for pair in ix.bm25_whole_text(q, len(ix.doc_ids)) if pair[0] in found]
        else:
            whole = ix.bm25_whole_text(q, depth) if one_column else ix.bm25_documents(q, depth)
        lists = [(wc, chunk_bm25), (wd, [d for d, _ in whole]), (wv, chunk_vector)]
        return fuse_document_lists([entry for entry in lists if entry[0] > 0])

    def shipped_three(q: str, v: NDArray[np.float32]) -> list[int]:
        """The store's own three-list fusion; a document only the whole list found stands in
        by its first chunk (``Library.search`` picks its best BM25 chunk: same document)."""
        whole = ix.bm25_whole_text(q, 50)
        stand_ins = {d: Candidate(int(ix.chunk_ids[ix.first_row[d]]), 0.0) for d, _ in whole}
        fused = fuse_documents(ix.bm25_chunks(q, 50), ix.vector_chunks(v, 50), ix.owner,
                               vector_weight=WHOLE_VECTOR_WEIGHT, whole=whole, stand_ins=stand_ins)
        return ix.first_documents([c.chunk_id for c in fused])

    table.update({
        "3 lists, doc list weight 0 (= two lists, a check of this fusion)": lambda q, v: three(q, v, wd=0.0),
        "3 lists through store.search.fuse_documents, vector weight 1.5 (shipped)": shipped_three,
        "whole-document BM25 alone, one text column": lambda q, v: [
            d for d, _ in ix.bm25_whole_text(q, 100)],
        "3 lists equal: chunk BM25 + whole-doc BM25 + chunk vector, 50 each": three,
        "3 lists equal, whole-doc BM25 title+text columns": lambda q, v: three(q, v, one_column=False),
        "3 lists equal, whole-doc BM25 top 100": lambda q, v: three(q, v, depth=100),
        "3 lists equal, whole-doc BM25 top 20": lambda q, v: three(q, v, depth=20),
        "whole-doc BM25 replaces chunk BM25 (+ chunk vector)": lambda q, v: three(q, v, wc=0.0),
        "whole-doc BM25 replaces chunk BM25, title+text columns": lambda q, v: three(
            q, v, wc=0.0, one_column=False),
        "3 lists, BM25 lists 0.5 each (BM25 : vector = 1 : 1)": lambda q, v: three(q, v, wc=0.5, wd=0.5),
        "3 lists, whole-doc BM25 weight 0.5": lambda q, v: three(q, v, wd=0.5),
        "3 lists, vector weight 1.5": lambda q, v: three(q, v, wv=1.5),
        "3 lists, vector weight 2": lambda q, v: three(q, v, wv=2.0),
        "3 lists, whole-doc BM25 of the chunk lists' documents only, vector weight 1.5": lambda q, v: three(
            q, v, wv=1.5, pool=True),
        "3 lists, whole-doc BM25 of the chunk lists' documents only, equal weights": lambda q, v: three(
            q, v, pool=True),
    })
    # The weights around the chosen 1 : 1 : 1.5, on a grid (dev chose among the rows above first).
    for wc in (0.0, 0.25, 0.5, 0.75, 1.0):
        for wv in (1.0, 1.25, 1.5, 1.75, 2.0):
            table[f"grid: chunk BM25 {wc}, whole-doc BM25 1, vector {wv}"] = (
                lambda c, w: lambda q, v: three(q, v, wc=c, wv=w))(wc, wv)
    return table


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--splits", default="dev,test")
    parser.add_argument("--only", default="", help="regular expression on the variant names")
    args = parser.parse_args()
    ix = Index(args.workdir, args.data)
    queries = {}
    with (args.data / "queries.jsonl").open(encoding="utf-8") as handle:
        for line in handle:
            record = json.loads(line)
            queries[record["_id"]] = record["text"]
    vectors: dict[str, NDArray[np.float32]] = {}
    for cache in args.workdir.glob("queries-*.npz"):
        with np.load(cache) as saved:
            vectors.update(zip(saved["texts"].tolist(), saved["vectors"], strict=True))
    present = set(ix.name.values())
    splits: dict[str, dict[str, dict[str, int]]] = {}
    for split in args.splits.split(","):
        qrels: dict[str, dict[str, int]] = defaultdict(dict)
        with (args.data / "qrels" / f"{split}.tsv").open(encoding="utf-8", newline="") as handle:
            next(handle)
            for line in handle:
                qid, doc, score = line.rstrip("\r\n").split("\t")
                if doc in present and int(score) > 0 and queries.get(qid) in vectors:
                    qrels[qid][doc] = int(score)
        splits[split] = dict(qrels)
    print(f"{len(ix.chunk_ids)} chunks of {len(ix.doc_ids)} documents; queries: "
          + ", ".join(f"{s} {len(q)}" for s, q in splits.items()) + "\n")
    print("| variant | " + " | ".join(splits) + " |\n|---|" + "---|" * len(splits))
    for label, rank in variants(ix).items():
        if args.only and not re.search(args.only, label):
            continue
        cells = []
        for qrels in splits.values():
            scores = []
            for qid, relevant in qrels.items():
                ranked = [ix.name[d] for d in rank(queries[qid], vectors[queries[qid]])]
                dcg = sum(relevant.get(d, 0) / math.log2(i + 2) for i, d in enumerate(ranked[:10]))
                ideal = sorted(relevant.values(), reverse=True)[:10]
                scores.append(dcg / sum(r / math.log2(i + 2) for i, r in enumerate(ideal)))
            cells.append(f"{np.mean(scores):.4f}")
        print(f"| {label} | " + " | ".join(cells) + " |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
