"""One collection's sync from start to end: recover, scan, index in passes, report.

A file that changed while it was read is read again after a fresh scan, up to ``MAX_PASSES``
passes in one sync. Progress starts where the collection stands: documents already done when
the sync begins count as done ("1,210 of 3,633 files done before this sync"). The embedding
model loads on a helper thread while progress keeps coming, since a first load takes seconds.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator, Iterable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path
from typing import Protocol

import sqlite_utils

from .chunking import CHUNKER_VERSION
from .db import write_transaction
from .embedder import Embedder
from .library_types import CollectionInfo, SyncProgress
from .parse_pools import ParsePoolLike
from .reconcile import NOT_A_FOLDER_ROW, SETTLED, WorkItem, ensure_identity, recover_interrupted
from .sync import HEARTBEAT_S, Pipeline

# A file rewritten while it was read is read again, up to this many passes in one sync.
MAX_PASSES = 3


class Reconcile(Protocol):
    def __call__(
        self, db: sqlite_utils.Database, collection_id: int, *, include_hidden: bool = False
    ) -> list[WorkItem]: ...


def done_before(
    db: sqlite_utils.Database, collection_id: int, work: Iterable[WorkItem]
) -> tuple[int, int]:
    """Files (and their bytes) of the collection that are settled and not in ``work``."""
    todo = {item.doc_id for item in work}
    rows = db.execute(
        f"SELECT id, size, state FROM documents WHERE collection_id = ? AND {NOT_A_FOLDER_ROW}",
        [collection_id],
    ).fetchall()
    done = [int(size or 0) for doc_id, size, state in rows if state in SETTLED and doc_id not in todo]
    return len(done), sum(done)


def sync_collection(
    db: sqlite_utils.Database,
    db_path: Path,
    info: CollectionInfo,
    embedder: Embedder,
    parse_pool_factory: Callable[[], ParsePoolLike],
    should_stop: Callable[[], bool],
    *,
    reconcile: Reconcile,
    max_file_bytes: int,
    index_hidden: bool,
    on_rebuild: Callable[[], None],
    counts: Callable[[], dict[str, int]],
    count_pool_factory: Callable[[], ParsePoolLike] | None = None,
) -> Generator[SyncProgress, None, bool]:
    """Bring ``info`` up to date with the disk, yielding progress; returns whether cancelled.

    ``count_pool_factory`` builds the pool that counts chunks ahead for the ETA
    (``count_ahead``; None: the ETA guesses them from the bytes).
    """
    started = time.monotonic()
    recover_interrupted(db, info.id)
    if ensure_identity(db, info.id, embedder.id, CHUNKER_VERSION):
        on_rebuild()
    yield SyncProgress(info.name, "scan", 0, 0, 0, 0.0, 0.0, None, elapsed_s=0.0)
    work = reconcile(db, info.id, include_hidden=index_hidden)
    before_files, before_bytes = done_before(db, info.id, work)
    files = chunks = done_bytes = 0
    cancelled = False
    for _ in range(MAX_PASSES):
        if not work or cancelled:
            break
        dimension = yield from _load_model(info.name, embedder, should_stop)
        if dimension is None:
            cancelled = True
            break
        with write_transaction(db):
            db.execute("UPDATE collections SET dimension = ? WHERE id = ?", [dimension, info.id])
        pool = parse_pool_factory()
        # Files read again in a later pass were counted done in the pass before.
        again = (len(work), sum(item.stat.size for item in work)) if files else (0, 0)
        before = (max(0, before_files + files - again[0]), max(0, before_bytes + done_bytes - again[1]))
        pipeline = Pipeline(
            db, db_path, (info.id, info.name), work, embedder, pool, should_stop,
            max_file_bytes=max_file_bytes, before=before, count_pool_factory=count_pool_factory,
        )
        run = pipeline.run()
        try:
            for event in run:
                cancelled = cancelled or event.cancelled
                yield event
        finally:
            run.close()  # stops the parse thread and releases claims before the pool goes
            pool.close()
        files += pipeline.files_done
        chunks += pipeline.chunks_done
        done_bytes += pipeline.meter.bytes_done
        # What changed while being read is read again after a fresh scan, never a bare
        # stat: the scan is what keeps reads inside the folder.
        requeued = {item.doc_id for item in pipeline.requeue}
        work = [
            w for w in reconcile(db, info.id, include_hidden=index_hidden) if w.doc_id in requeued
        ] if requeued else []
    if work and not cancelled:
        mark_still_changing(db, [item.doc_id for item in work], MAX_PASSES)
    elapsed = max(time.monotonic() - started, 1e-6)
    yield SyncProgress(
        info.name, "done", files, files, chunks, files / elapsed, chunks / elapsed, 0.0,
        elapsed_s=elapsed, counts=counts(), cancelled=cancelled, bytes_done=done_bytes,
        bytes_total=done_bytes, bytes_per_s=done_bytes / elapsed, files_before=before_files,
        bytes_before=before_bytes,
    )
    return cancelled


def _load_model(
    collection: str, embedder: Embedder, should_stop: Callable[[], bool]
) -> Generator[SyncProgress, None, int | None]:
    """The embedder's dimension, loading the model on a helper thread while progress goes on.

    Returns None when the sync is cancelled meanwhile (the load finishes in the background).
    """
    started = time.monotonic()
    loader = ThreadPoolExecutor(1, thread_name_prefix="bastion-embedder-load")
    try:
        # The tokenizer too: the pipeline asks for it first, and it comes from the model.
        loading = loader.submit(lambda: (embedder.dimension, embedder.tokenizer())[0])
        while True:
            try:
                return int(loading.result(timeout=HEARTBEAT_S))
            except FutureTimeout:
                if should_stop():
                    return None
                now = time.monotonic()
                yield SyncProgress(
                    collection, "index", 0, 0, 0, 0.0, 0.0, None, elapsed_s=now - started,
                    action="loading", action_s=now - started,
                )
    finally:
        loader.shutdown(wait=False)


def mark_still_changing(db: sqlite_utils.Database, doc_ids: list[int], passes: int) -> None:
    """Documents that changed while being read in each of ``passes`` passes end ``skipped``.

    No size is kept, so the next sync reads them again (a file still being written, such as a
    growing log, is indexed once it settles).
    """
    reason = (
        f"It kept changing while being read ({passes} times in this sync), as a file that is "
        "still being written does; it is read again at the next sync."
    )
    with write_transaction(db):
        db.conn.executemany(
            "UPDATE documents SET state = 'skipped', reason = ?, size = NULL, mtime_ns = NULL, "
            "sha256 = NULL, chunk_count = 0, updated_at = ? WHERE id = ?",
            [(reason, time.time(), doc_id) for doc_id in doc_ids],
        )
