"""Retrieval quality on NFCorpus (BEIR): nDCG@10 on the test qrels for BM25, vector and hybrid.

Usage:
    .venv/bin/python bench/nfcorpus_bench.py [--data PATH] [--workdir DIR] [--limit-docs N]
        [--split test|dev] [--no-sync] [--max-queries N]

Any BEIR-format folder works (``--data ../shared/data/squad2-dev-subset`` scores question ->
paragraph retrieval). Each corpus record becomes one text file ("title" + blank line + "text")
indexed through the library's real sync (token-aware chunking, all-MiniLM-L6-v2, FTS5). Scoring
is per document: the first hit of a document places it. nDCG@10 uses linear gains (as
trec_eval/BEIR). The index and the query vectors are kept in ``--workdir`` so variants can be
re-scored without re-embedding; ``--no-sync`` scores the index as it stands (only indexed
documents count, and queries with no relevant indexed document are left out).

The "whole-document RRF" row is the reference the chunked index must reach: BM25 over each
whole document (an in-memory FTS5 table, same tokenizer and query words) and the mean of each
document's chunk vectors, fused by RRF k=60 over their top 100.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import sqlite3
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

import bastion.desktop  # noqa: F401 - offline environment first
from bastion.store.embedder import (
    ChunkTokenizer,
    SentenceTransformerEmbedder,
    default_embedder_folder,
)
from bastion.store.library import Library
from bastion.store.parse_pools import FunctionParsePool
from bastion.store.parsers.types import PageText, ParsedDocument, ParseOutcome
from bastion.store.search import RRF_K, fts_query

REPO = Path(__file__).resolve().parent.parent


class CachedQueries:
    """The real embedder, with query vectors computed once in a batch (queries repeat per mode)."""

    def __init__(self, inner: SentenceTransformerEmbedder) -> None:
        self.inner = inner
        self.cache: dict[str, NDArray[np.float32]] = {}

    @property
    def id(self) -> str:
        return self.inner.id

    @property
    def dimension(self) -> int:
        return self.inner.dimension

    @property
    def max_tokens(self) -> int:
        return self.inner.max_tokens

    def tokenizer(self) -> ChunkTokenizer:
        return self.inner.tokenizer()

    def prime(self, queries: list[str], cache_file: Path) -> None:
        """Embed ``queries`` once, keeping the vectors in ``cache_file`` for the next run."""
        if cache_file.exists():
            with np.load(cache_file) as saved:
                self.cache.update(zip(saved["texts"].tolist(), saved["vectors"], strict=True))
        missing = [q for q in dict.fromkeys(queries) if q not in self.cache]
        if missing:
            for query, vector in zip(missing, self.inner.embed(missing), strict=True):
                self.cache[query] = vector
            np.savez(cache_file, texts=np.array(list(self.cache)), vectors=np.stack(list(self.cache.values())))

    def embed(self, texts: list[str]) -> NDArray[np.float32]:
        if len(texts) == 1 and texts[0] in self.cache:
            return self.cache[texts[0]][None, :]
        return self.inner.embed(texts)


def read_text(path: Path) -> ParseOutcome:
    """Our own UTF-8 files: read in-process (the parse sandbox is not what is measured here)."""
    return ParseOutcome("ok", document=ParsedDocument([PageText(path.read_text("utf-8"))], kind="text"))


def ndcg_at_10(ranked: list[str], qrels: dict[str, int]) -> float:
    dcg = sum(qrels.get(doc, 0) / math.log2(i + 2) for i, doc in enumerate(ranked[:10]))
    ideal = sorted(qrels.values(), reverse=True)[:10]
    idcg = sum(rel / math.log2(i + 2) for i, rel in enumerate(ideal))
    return dcg / idcg if idcg else 0.0


def whole_document_rrf(
    db_path: Path, corpus: dict[str, tuple[str, str]], names: dict[str, str],
) -> Callable[[str, np.ndarray], list[str]]:
    """The reference ranking: whole-document BM25 and mean chunk vectors, fused by RRF."""
    db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    rows = db.execute(
        "SELECT d.path, e.vector FROM chunks c JOIN documents d ON d.id = c.document_id "
        "JOIN embeddings e ON e.chunk_id = c.id ORDER BY d.id, c.ordinal"
    ).fetchall()
    db.close()
    sums: dict[str, np.ndarray] = {}
    for path, blob in rows:
        doc = names.get(Path(path).name)
        if doc is not None:
            vector = np.frombuffer(blob, dtype="<f4")
            sums[doc] = sums[doc] + vector if doc in sums else vector.copy()
    ids = list(sums)
    matrix = np.stack([sums[d] / np.linalg.norm(sums[d]) for d in ids])
    fts = sqlite3.connect(":memory:")
    fts.execute("CREATE VIRTUAL TABLE d USING fts5(text, tokenize='porter unicode61 remove_diacritics 2')")
    fts.executemany(
        "INSERT INTO d (rowid, text) VALUES (?, ?)",
        [(n, f"{corpus[d][0]}\n\n{corpus[d][1]}") for n, d in enumerate(ids)],
    )

    def rank(query: str, query_vector: np.ndarray) -> list[str]:
        scores: dict[str, float] = {}
        match = fts_query(query)
        bm25 = [] if match is None else [r[0] for r in fts.execute(
            "SELECT rowid FROM d WHERE d MATCH ? ORDER BY bm25(d) LIMIT 100", [match])]
        vector = np.argsort(-(matrix @ query_vector), kind="stable")[:100].tolist()
        for ranked in (bm25, vector):
            for place, row in enumerate(ranked, start=1):
                scores[ids[row]] = scores.get(ids[row], 0.0) + 1.0 / (RRF_K + place)
        return sorted(scores, key=lambda d: -scores[d])

    return rank


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO / "../shared/data/nfcorpus")
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "bastion-nfcorpus")
    parser.add_argument("--limit-docs", type=int, default=0, help="index only the first N records (smoke)")
    parser.add_argument("--split", default="test", help="qrels file to score: test (default) or dev")
    parser.add_argument("--no-sync", action="store_true", help="score the index as it stands")
    parser.add_argument("--max-queries", type=int, default=0, help="score every n-th query to keep about N")
    args = parser.parse_args()
    data = args.data.resolve()
    corpus_dir = args.workdir / "corpus"
    corpus_dir.mkdir(parents=True, exist_ok=True)
    names: dict[str, str] = {}  # file name -> corpus id
    corpus: dict[str, tuple[str, str]] = {}
    with (data / "corpus.jsonl").open(encoding="utf-8") as handle:
        for n, line in enumerate(handle):
            if args.limit_docs and n >= args.limit_docs:
                break
            record = json.loads(line)
            name = f"{record['_id']}.txt"
            names[name] = record["_id"]
            corpus[record["_id"]] = (record.get("title", ""), record.get("text", ""))
            target = corpus_dir / name
            if not target.exists():
                target.write_text(f"{record.get('title', '')}\n\n{record.get('text', '')}\n", "utf-8")
    queries = {}
    with (data / "queries.jsonl").open(encoding="utf-8") as handle:
        for line in handle:
            record = json.loads(line)
            queries[record["_id"]] = record["text"]

    embedder = CachedQueries(SentenceTransformerEmbedder(default_embedder_folder()))
    library = Library(args.workdir / "library.db", lambda folder: embedder, lambda: FunctionParsePool(read_text))
    if "nfcorpus" not in {c.name for c in library.collections()}:
        library.add_collection("nfcorpus", [corpus_dir])
    started = time.perf_counter()
    if not args.no_sync:
        for event in library.sync("nfcorpus"):
            if event.phase == "done":
                print(f"<!-- indexed {event.files_done} files, {event.chunks} chunks in "
                      f"{time.perf_counter() - started:.0f} s -->", flush=True)
    indexed = {
        names[Path(r[0]).name]
        for r in library.db.execute("SELECT path FROM documents WHERE chunk_count > 0 AND state = 'indexed'")
        if Path(r[0]).name in names
    }
    qrels: dict[str, dict[str, int]] = {}
    with (data / "qrels" / f"{args.split}.tsv").open(encoding="utf-8", newline="") as handle:
        next(handle)  # header line
        for line in handle:
            qid, doc, score = line.rstrip("\r\n").split("\t")
            if doc in indexed:
                qrels.setdefault(qid, {})[doc] = int(score)
    test_ids = [q for q in qrels if q in queries and any(qrels[q].values())]
    if args.max_queries and len(test_ids) > args.max_queries:
        test_ids = test_ids[:: math.ceil(len(test_ids) / args.max_queries)]
    embedder.prime(
        [queries[q] for q in test_ids],
        args.workdir / f"queries-{hashlib.sha256(embedder.id.encode()).hexdigest()[:12]}.npz",
    )

    def evaluate(rank: Callable[[str], list[str]]) -> tuple[float, float, float]:
        """Mean nDCG@10, and the mean and p95 of the search time in ms."""
        scores, times = [], []
        for qid in test_ids:
            started = time.perf_counter()
            ranked = rank(queries[qid])
            times.append((time.perf_counter() - started) * 1000)
            scores.append(ndcg_at_10(ranked, qrels[qid]))
        return float(np.mean(scores)), float(np.mean(times)), float(np.percentile(times, 95))

    def library_ranking(**options: object) -> Callable[[str], list[str]]:
        def rank(query: str) -> list[str]:
            ranked: list[str] = []
            for hit in library.search(query, k=100, **options):  # type: ignore[arg-type]
                doc = names.get(Path(hit.path).name)
                if doc and doc not in ranked:  # a document's first hit places it
                    ranked.append(doc)
            return ranked
        return rank

    reference = whole_document_rrf(args.workdir / "library.db", corpus, names)
    chunks = library.status("nfcorpus")[0].chunks
    print(f"# {data.name} retrieval quality ({len(indexed)} documents indexed, {chunks} chunks, "
          f"{len(test_ids)} {args.split} queries; machine shared)\n")
    print("| retrieval | nDCG@10 | search ms mean | p95 |\n|---|---|---|---|")
    variants: list[tuple[str, Callable[[str], list[str]]]] = [
        ("BM25 only (FTS5, porter, title+text)", library_ranking(mode="bm25")),
        ("vector only (all-MiniLM-L6-v2)", library_ranking(mode="vector")),
        ("whole-document RRF (reference: whole-doc BM25 + mean chunk vector)",
         lambda q: reference(q, embedder.cache[q])),
        ("hybrid, chunk-level RRF k=60 (before)", library_ranking(fusion="chunks")),
        ("hybrid, document-level RRF k=60 (two lists, before)", library_ranking(fusion="documents")),
        ("**hybrid, three lists: chunk BM25 + whole-document BM25 + vector x1.5 (default)**",
         library_ranking()),
        ("hybrid, document-level, BM25 weight 1.5",
         library_ranking(fusion="documents", bm25_weight=1.5)),
        ("hybrid, document-level, vector weight 1.5",
         library_ranking(fusion="documents", vector_weight=1.5)),
    ]
    for label, rank in variants:
        ndcg, mean_ms, p95_ms = evaluate(rank)
        print(f"| {label} | {ndcg:.4f} | {mean_ms:.1f} | {p95_ms:.1f} |", flush=True)
    library.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
