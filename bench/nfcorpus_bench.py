"""Retrieval quality on NFCorpus (BEIR): nDCG@10 on the test qrels for BM25, vector and hybrid.

Usage:
    .venv/bin/python bench/nfcorpus_bench.py [--data PATH] [--workdir DIR] [--limit-docs N]

Each corpus record becomes one text file ("title" + blank line + "text") indexed through the
library's real sync (token-aware chunking, all-MiniLM-L6-v2, FTS5). Scoring is per document:
the best chunk of a document stands for it. nDCG@10 uses linear gains (as trec_eval/BEIR).
The index is kept in ``--workdir`` so variants can be re-scored without re-embedding.
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
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

    def prime(self, queries: list[str]) -> None:
        for query, vector in zip(queries, self.inner.embed(queries), strict=True):
            self.cache[query] = vector

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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO / "../shared/data/nfcorpus")
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "bastion-nfcorpus")
    parser.add_argument("--limit-docs", type=int, default=0, help="index only the first N records (smoke)")
    args = parser.parse_args()
    data = args.data.resolve()
    corpus_dir = args.workdir / "corpus"
    corpus_dir.mkdir(parents=True, exist_ok=True)
    names: dict[str, str] = {}  # file name -> corpus id
    with (data / "corpus.jsonl").open(encoding="utf-8") as handle:
        for n, line in enumerate(handle):
            if args.limit_docs and n >= args.limit_docs:
                break
            record = json.loads(line)
            name = f"{record['_id']}.txt"
            names[name] = record["_id"]
            target = corpus_dir / name
            if not target.exists():
                target.write_text(f"{record.get('title', '')}\n\n{record.get('text', '')}\n", "utf-8")
    queries = {}
    with (data / "queries.jsonl").open(encoding="utf-8") as handle:
        for line in handle:
            record = json.loads(line)
            queries[record["_id"]] = record["text"]
    qrels: dict[str, dict[str, int]] = {}
    with (data / "qrels" / "test.tsv").open(encoding="utf-8", newline="") as handle:
        next(handle)  # header line
        for line in handle:
            qid, doc, score = line.rstrip("\r\n").split("\t")
            if doc in names.values() or not args.limit_docs:
                qrels.setdefault(qid, {})[doc] = int(score)
    test_ids = [q for q in qrels if q in queries]

    embedder = CachedQueries(SentenceTransformerEmbedder(default_embedder_folder()))
    library = Library(args.workdir / "library.db", lambda folder: embedder, lambda: FunctionParsePool(read_text))
    if "nfcorpus" not in {c.name for c in library.collections()}:
        library.add_collection("nfcorpus", [corpus_dir])
    started = time.perf_counter()
    for event in library.sync("nfcorpus"):
        if event.phase == "done":
            print(f"<!-- indexed {event.files_done} files, {event.chunks} chunks in "
                  f"{time.perf_counter() - started:.0f} s -->", flush=True)
    embedder.prime([queries[q] for q in test_ids])

    def evaluate(**options: object) -> float:
        scores = []
        for qid in test_ids:
            hits = library.search(queries[qid], k=100, **options)  # type: ignore[arg-type]
            ranked: list[str] = []
            for hit in hits:  # best chunk per document: first occurrence wins
                doc = names.get(Path(hit.path).name)
                if doc and doc not in ranked:
                    ranked.append(doc)
            scores.append(ndcg_at_10(ranked, qrels[qid]))
        return float(np.mean(scores))

    chunks = library.status("nfcorpus")[0].chunks
    print(f"# NFCorpus retrieval quality ({len(names)} documents, {chunks} chunks, "
          f"{len(test_ids)} test queries)\n")
    print("| retrieval | nDCG@10 |\n|---|---|")
    variants: list[tuple[str, dict[str, object]]] = [
        ("BM25 only (FTS5, porter, title+text)", {"mode": "bm25"}),
        ("vector only (all-MiniLM-L6-v2, exact)", {"mode": "vector"}),
        ("hybrid: RRF k=60, equal weights", {"mode": "hybrid"}),
        ("hybrid: weighted RRF, BM25 1.5 : vector 1", {"bm25_weight": 1.5}),
        ("hybrid: weighted RRF, BM25 1 : vector 1.5", {"vector_weight": 1.5}),
    ]
    for label, options in variants:
        print(f"| {label} | {evaluate(**options):.4f} |", flush=True)
    library.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
