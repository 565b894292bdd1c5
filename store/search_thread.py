"""The second half of a hybrid search, on a thread of its own with its own read connection.

A hybrid search has two independent halves. The caller's thread ranks chunks by BM25 (FTS5);
this thread scans the vector matrix, rescores its shortlist from the float32 blobs, and ranks
whole documents by BM25 (``document_fts``). SQLite and numpy release the GIL, so on two cores the
halves overlap and a search costs about the slower half, not their sum. At a million chunks the
chunk BM25 is the slower half (``bench/search_bench.py``), so everything else rides beside it.

The thread opens its own connection to ``library.db`` (a connection belongs to one thread), never
migrates or writes, and closes it when the library closes. Each statement reads the latest
committed state, as the caller's connection does.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import sqlite_utils

from .db import open_library_db
from .document_fts import document_candidates
from .search import CANDIDATES
from .vector_index import Matrix, rescore, shortlist

Plan = Sequence[tuple[Matrix, np.ndarray]]


@dataclass
class HalfResult:
    """What the search thread found, and the seconds each part took."""

    vector: list[tuple[int, float]] = field(default_factory=list)  # (chunk id, cosine), best first
    documents: list[tuple[int, float]] = field(default_factory=list)  # whole-document BM25
    scan_s: float = 0.0
    rescore_s: float = 0.0
    whole_s: float = 0.0


class SearchThread:
    """One helper thread for the vector and whole-document halves of a library's searches."""

    def __init__(self, db_path: Path) -> None:
        self._db_path = db_path
        self._local = threading.local()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bastion-search")

    def submit(
        self, plan: Plan, query: str, collection_ids: Sequence[int], whole_documents: bool
    ) -> Future[HalfResult]:
        """Start the vector scan of ``plan`` (and the whole-document BM25 of ``query`` over
        ``collection_ids`` if ``whole_documents``); the future holds their results."""
        return self._pool.submit(self._run, list(plan), query, list(collection_ids), whole_documents)

    def close(self) -> None:
        """Close the thread's connection (on its own thread) and stop the thread."""
        # During interpreter shutdown no new work may run (RuntimeError); the process ends anyway.
        with contextlib.suppress(RuntimeError):
            self._pool.submit(self._close_connection).result()
        self._pool.shutdown(wait=True)

    def _db(self) -> sqlite_utils.Database:
        db = getattr(self._local, "db", None)
        if db is None:
            db = self._local.db = open_library_db(self._db_path, migrate_schema=False)
        return db

    def _close_connection(self) -> None:
        db = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None

    def _run(
        self, plan: Plan, query: str, collection_ids: list[int], whole_documents: bool
    ) -> HalfResult:
        result = HalfResult()
        t0 = time.perf_counter()
        shortlists = [shortlist(matrix, q, CANDIDATES) for matrix, q in plan]
        t1 = time.perf_counter()
        if plan:
            db = self._db()
            for (_, query_vector), ids in zip(plan, shortlists, strict=True):
                result.vector += rescore(db, ids, query_vector, CANDIDATES)
            result.vector.sort(key=lambda pair: (-pair[1], pair[0]))
            del result.vector[CANDIDATES:]
        t2 = time.perf_counter()
        if whole_documents:
            result.documents = document_candidates(self._db(), query, collection_ids)
        t3 = time.perf_counter()
        result.scan_s, result.rescore_s, result.whole_s = t1 - t0, t2 - t1, t3 - t2
        return result
