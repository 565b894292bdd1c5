"""Vector search at 100k and 1M chunks: latency, recall@10/50 against exact search, memory, build.

Usage:
    .venv/bin/python bench/vector_scale_bench.py [--sizes 100000 1000000] [--queries 100]
        [--data /work/shared/data/nfcorpus] [--bases 1200] [--workdir DIR] [--hnsw-sizes 100000]

Vectors like MiniLM's: the real all-MiniLM-L6-v2 embeddings of ``--bases`` NFCorpus documents
(title and first 400 characters) are the topics; each synthetic document is a topic moved by a
random mix of other real embeddings (so it stays in the embeddings' own subspace) plus a little
isotropic noise, and each of its 20 chunks is the document moved again, less. Measured: a chunk's
nearest other chunk has cosine ~0.91, a real NFCorpus query's best chunk ~0.5 (its best real
document: 0.51). Queries are the real embeddings of the first ``--queries`` NFCorpus queries.
The embeddings are computed once and cached in the work folder.

Each size is written to a library.db (embeddings as float32 blobs, as Bastion stores them), then
every method runs the same queries, one at a time, with torch on 2 threads: its first pass, then
``rescore`` of the candidates from SQLite (exact float32 cosines), as ``Library.search`` does for
its 50 vector candidates. Recall@10 and @50 are the shares of the exact float32 top 10 and top 50
(numpy over all vectors) found. "build s" is the time from the database to a searchable index
(loading the matrix, making codes or the graph); memory is what the method holds in RAM, per
million chunks. "CPU" is the process CPU time per query, all threads: on a machine shared with
other work (and under ``nice``) wall time includes waiting for a core, CPU time approximates the
unloaded cost. ``--hnsw`` adds usearch's HNSW graph (``pip install usearch``; not a dependency).
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import sqlite_utils
import torch
from numpy.typing import NDArray

import bastion.desktop  # noqa: F401 - offline environment first
from bastion.store.db import open_library_db
from bastion.store.embedder import SentenceTransformerEmbedder, default_embedder_folder
from bastion.store.search import CANDIDATES
from bastion.store.vector_index import CODES_FROM, VectorIndex, first_pass, rescore, shortlist

DIM = 384
CHUNKS_PER_DOC = 20
NEVER = 1 << 62
REPO = Path(__file__).resolve().parent.parent
Search = Callable[[NDArray[np.float32]], list[tuple[int, float]]]


def _unit(rows: NDArray[np.float32]) -> NDArray[np.float32]:
    unit: NDArray[np.float32] = (rows / np.linalg.norm(rows, axis=-1, keepdims=True)).astype(np.float32)
    return unit


def real_embeddings(data: Path, bases: int, queries: int, cache: Path) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    """MiniLM embeddings of NFCorpus documents and queries (cached in ``cache``)."""
    docs_file, queries_file = cache / f"nfcorpus-docs-{bases}.npy", cache / f"nfcorpus-queries-{queries}.npy"
    if not (docs_file.exists() and queries_file.exists()):
        embedder = SentenceTransformerEmbedder(default_embedder_folder(), batch_size=64)
        with open(data / "corpus.jsonl", encoding="utf-8") as f:
            docs = [json.loads(line) for _, line in zip(range(bases), f, strict=False)]
        with open(data / "queries.jsonl", encoding="utf-8") as f:
            texts = [json.loads(line)["text"] for _, line in zip(range(queries), f, strict=False)]
        np.save(queries_file, embedder.embed(texts))
        np.save(docs_file, embedder.embed([(d["title"] + ". " + d["text"])[:400] for d in docs]))
    return np.load(docs_file), np.load(queries_file)


def _spread(centred: NDArray[np.float32], size: int, rng: np.random.Generator) -> NDArray[np.float32]:
    """Unit directions: random mixes of 4 centred real embeddings, plus isotropic noise."""
    weights = rng.standard_normal((size, 4)).astype(np.float32)
    mix = np.einsum("nt,ntd->nd", weights, centred[rng.integers(0, len(centred), (size, 4))])
    noise = rng.standard_normal((size, centred.shape[1])).astype(np.float32)
    return _unit(_unit(mix) + 0.5 * _unit(noise))


def minilm_like(n: int, bases: NDArray[np.float32], rng: np.random.Generator) -> NDArray[np.float32]:
    """``n`` chunk vectors: 20 chunks a document, each document near one real embedding."""
    centred = bases - bases.mean(axis=0)
    docs = (n + CHUNKS_PER_DOC - 1) // CHUNKS_PER_DOC
    doc_vectors = _unit(bases[rng.integers(0, len(bases), docs)] + 0.7 * _spread(centred, docs, rng))
    out = np.empty((n, bases.shape[1]), dtype=np.float32)
    for start in range(0, n, 65_536):
        m = min(65_536, n - start)
        parents = doc_vectors[np.arange(start, start + m) // CHUNKS_PER_DOC]
        out[start:start + m] = _unit(parents + 0.35 * _spread(centred, m, rng))
    return out


def write_library(db_path: Path, vectors: NDArray[np.float32]) -> None:
    """A library.db holding one collection with these vectors (chunk ids 1..n)."""
    db = open_library_db(db_path)
    db.execute(
        "INSERT INTO collections (name, embedder_id, dimension, chunker_version, created) "
        "VALUES ('synthetic', 'bench', ?, 1, ?)",
        [DIM, time.time()],
    )
    db.execute("INSERT INTO folders (collection_id, root, root_bytes) VALUES (1, '/synthetic', x'2f')")
    n = len(vectors)
    docs = (n + CHUNKS_PER_DOC - 1) // CHUNKS_PER_DOC
    with db.atomic():
        db.conn.executemany(
            "INSERT INTO documents (id, collection_id, folder_id, path, path_bytes, state, "
            "chunk_count, updated_at) VALUES (?, 1, 1, ?, ?, 'indexed', ?, 0)",
            [(d + 1, f"/synthetic/doc{d}.txt", f"doc{d}".encode(), CHUNKS_PER_DOC) for d in range(docs)],
        )
    for start in range(0, n, 50_000):
        ids = range(start + 1, min(n, start + 50_000) + 1)
        with db.atomic():
            db.conn.executemany(
                "INSERT INTO chunks (id, document_id, ordinal, text, page, char_start, char_end) "
                "VALUES (?, ?, ?, '', NULL, 0, 0)",
                [(i, (i - 1) // CHUNKS_PER_DOC + 1, (i - 1) % CHUNKS_PER_DOC) for i in ids],
            )
            db.conn.executemany(
                "INSERT INTO embeddings (chunk_id, vector) VALUES (?, ?)",
                [(i, vectors[i - 1].astype("<f4").tobytes()) for i in ids],
            )
    db.close()


def exact_top(vectors: NDArray[np.float32], queries: NDArray[np.float32], k: int) -> list[list[int]]:
    """Chunk ids (1-based rows) of the exact float32 top ``k`` of each query."""
    scores = np.empty((len(queries), len(vectors)), dtype=np.float32)
    for start in range(0, len(vectors), 131_072):
        scores[:, start:start + 131_072] = queries @ vectors[start:start + 131_072].T
    tops = []
    for row in scores:
        top = np.argpartition(-row, k)[:k]
        tops.append([int(i) + 1 for i in top[np.argsort(-row[top])]])
    return tops


def measure(name: str, size: int, build: Callable[[], tuple[Search, int]], queries: NDArray[np.float32], exact: list[list[int]]) -> None:
    started = time.perf_counter()
    search, held = build()
    build_s = time.perf_counter() - started
    search(queries[0])  # warm caches
    times, cpu, found10, found50 = [], [], 0, 0
    for query, truth in zip(queries, exact, strict=True):
        t, c = time.perf_counter(), time.process_time()
        got = [cid for cid, _ in search(query)]
        times.append((time.perf_counter() - t) * 1000)
        cpu.append((time.process_time() - c) * 1000)
        found10 += len(set(got[:10]) & set(truth[:10]))
        found50 += len(set(got[:CANDIDATES]) & set(truth[:CANDIDATES]))
    print(f"| {size:,} | {name} | {build_s:.1f} | {np.percentile(times, 50):.1f} | "
          f"{np.percentile(times, 95):.1f} | {np.percentile(cpu, 50):.1f} | {np.percentile(cpu, 95):.1f} | {found10 / (10 * len(queries)):.4f} | "
          f"{found50 / (CANDIDATES * len(queries)):.4f} | {held / size * 1e6 / 2**20:.0f} |", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--data", type=Path, default=Path("/work/shared/data/nfcorpus"))
    parser.add_argument("--bases", type=int, default=1200)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--hnsw-sizes", type=int, nargs="*", default=[],
                        help="sizes at which to measure usearch HNSW too (if installed)")
    args = parser.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="bastion-vector-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(2)
    bases, queries = real_embeddings(args.data, args.bases, args.queries, work)

    print(f"# Vector search ({time.strftime('%Y-%m-%d %H:%M')}, 2 shared cores, torch threads "
          f"{torch.get_num_threads()}; {len(queries)} NFCorpus queries; figures are noisy)\n")
    print("| chunks | method | build s | p50 ms | p95 ms | CPU p50 ms | CPU p95 ms | recall@10 | "
          "recall@50 | MB per 1M chunks |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for size in args.sizes:
        run_size(size, bases, queries, work, size in args.hnsw_sizes)
    if args.workdir is None:
        shutil.rmtree(work, ignore_errors=True)
    return 0


def run_size(size: int, bases: NDArray[np.float32], queries: NDArray[np.float32], work: Path, with_hnsw: bool) -> None:
    """One row per method for a collection of ``size`` chunks."""
    vectors = minilm_like(size, bases, np.random.default_rng(size))
    db_path = work / f"vectors-{size}.db"
    for suffix in ("", "-wal", "-shm"):
        Path(str(db_path) + suffix).unlink(missing_ok=True)
    write_library(db_path, vectors)
    exact = exact_top(vectors, queries, CANDIDATES)
    db = open_library_db(db_path)

    def scan(codes_from: int) -> tuple[Search, int]:
        matrix = VectorIndex(codes_from=codes_from).matrix(db, 1, 0, DIM)
        return (lambda q: rescore(db, shortlist(matrix, q, CANDIDATES), q, CANDIDATES)), matrix.nbytes

    measure("float16 scan → float32 rescore (exact; before)", size, lambda: scan(NEVER), queries, exact)
    measure(f"sign bits → {first_pass(CANDIDATES, size):,} rows → float16 → float32 (chosen; "
            f"used from {CODES_FROM:,} rows)", size, lambda: scan(0), queries, exact)
    measure("int8 scan (per-row scale) → 200 rows → float32", size, lambda: int8_scan(db, vectors), queries, exact)
    if with_hnsw:
        measure("usearch HNSW f16 (M 16, ef 128/256) → float32", size, lambda: hnsw(db, vectors), queries, exact)
    db.close()
    for suffix in ("", "-wal", "-shm"):
        Path(str(db_path) + suffix).unlink(missing_ok=True)


def int8_scan(db: sqlite_utils.Database, vectors: NDArray[np.float32]) -> tuple[Search, int]:
    """int8 rows with one scale each, scanned by fbgemm's int8 kernel (torch's dynamic quantized
    linear: the query is quantized to uint8 per call); numpy and ``torch.mv`` have no int8
    matrix-vector product with int32 sums. The 200 best are rescored."""
    with warnings.catch_warnings():  # torch deprecates its quantized tensors; fine for a bench
        warnings.simplefilter("ignore")
        weights = torch.from_numpy(vectors)
        scale = (weights.abs().amax(dim=1) / 127).double()
        zero = torch.zeros(len(vectors), dtype=torch.long)
        quantized = torch.quantize_per_channel(weights, scale, zero, 0, torch.qint8)
        packed = torch.ops.quantized.linear_prepack(quantized, None)
    ids = np.arange(1, len(vectors) + 1, dtype=np.int64)

    def search(query: NDArray[np.float32]) -> list[tuple[int, float]]:
        with torch.inference_mode():
            scores = torch.ops.quantized.linear_dynamic(torch.from_numpy(query)[None, :], packed)[0]
            top = torch.topk(scores, 200, sorted=False).indices.numpy()
        return rescore(db, ids[top], query, CANDIDATES)

    return search, int(len(vectors) * (vectors.shape[1] + 8) + ids.nbytes)


def hnsw(db: sqlite_utils.Database, vectors: NDArray[np.float32]) -> tuple[Search, int]:
    from usearch.index import Index  # type: ignore[import-not-found]  # only with --hnsw; not a dependency

    index = Index(ndim=vectors.shape[1], metric="cos", dtype="f16", connectivity=16,
                  expansion_add=128, expansion_search=256)
    index.add(np.arange(1, len(vectors) + 1, dtype=np.uint64), vectors, threads=2)

    def search(query: NDArray[np.float32]) -> list[tuple[int, float]]:
        found = index.search(query, CANDIDATES)
        return rescore(db, np.asarray(found.keys, dtype=np.int64), query, CANDIDATES)

    return search, int(index.memory_usage)


if __name__ == "__main__":
    raise SystemExit(main())
