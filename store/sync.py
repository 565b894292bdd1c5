"""The indexing pipeline of one collection: hash → claim → parse → chunk → embed → swap.

A helper thread confirms changes by SHA-256, claims each document in its own committed
transaction (``in_progress``, attempts + 1) right before it enters the parse pool, and chunks
what comes back. The owner thread embeds chunks in batches across documents, so the embedder
never waits for small files, and swaps each document's chunks and vectors in one transaction.
``run_pipeline`` is a generator: every event it yields is a progress report and a cancel point.
"""

from __future__ import annotations

import hashlib
import os
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import sqlite_utils
from numpy.typing import NDArray

from .chunking import Chunk, chunk_pages
from .db import open_library_db, write_transaction
from .embedder import ChunkTokenizer, Embedder
from .library_types import MAX_CRASHES, SyncProgress
from .parse_pools import ParsePoolLike
from .parsers.types import ParseOutcome
from .reconcile import SETTLED, WorkItem
from .scan import FileStat
from .vector_index import vector_to_blob

EMBED_BATCH = 64
_QUEUE_DEPTH = 16


Cancel = Callable[[], bool]


@dataclass
class _Parsed:
    item: WorkItem
    outcome: ParseOutcome
    sha: str
    stat: FileStat
    chunks: list[Chunk]
    rewritten: bool


@dataclass
class _Settled:
    item: WorkItem
    kind: str  # "gone" | "touched" | "unreadable"
    reason: str = ""
    sha: str | None = None
    stat: FileStat | None = None


@dataclass
class _Buffered:
    parsed: _Parsed
    vectors: list[NDArray[np.float32]] = field(default_factory=list)
    embedded: int = 0


_DONE = object()


def sqlite_text(text: str | None) -> str | None:
    """``text`` safe for SQLite: lone surrogates (undecodable file names) become "?".

    One code point for one, so chunk offsets into the page text stay right.
    """
    if text is None:
        return None
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "replace").decode("utf-8")
    return text


def sha256_file(path: str) -> tuple[str, FileStat]:
    """SHA-256 of a file and its stat taken before reading."""
    st = os.stat(path)
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest(), FileStat(st.st_size, st.st_mtime_ns)


class Pipeline:
    """One pass over ``work`` for collection ``collection_id``; use ``run()`` as a generator."""

    def __init__(
        self,
        db: sqlite_utils.Database,
        db_path: Path,
        collection: tuple[int, str],
        work: list[WorkItem],
        embedder: Embedder,
        pool: ParsePoolLike,
        cancel: Cancel,
    ) -> None:
        self.db, self.db_path = db, db_path
        self.collection_id, self.collection_name = collection
        self.work, self.embedder, self.pool, self.cancel = work, embedder, pool, cancel
        self.queue: queue.Queue[object] = queue.Queue(maxsize=_QUEUE_DEPTH)
        self.stop = threading.Event()
        self.claimed: set[int] = set()
        self.requeue: list[WorkItem] = []
        self.files_done = 0
        self.chunks_done = 0
        self.started = time.monotonic()
        self.current: str | None = None

    # ---- owner thread -------------------------------------------------------------------

    def run(self) -> Generator[SyncProgress, None, None]:
        """Index the work list, yielding progress; cancel or close to stop cleanly."""
        tokenizer = self.embedder.tokenizer()
        max_tokens = self.embedder.max_tokens
        thread = threading.Thread(
            target=self._produce, args=(tokenizer, max_tokens), name="bastion-parse", daemon=True
        )
        buffer: deque[_Buffered] = deque()
        pending = 0
        producer_done = False
        thread.start()
        try:
            while not (producer_done and pending == 0):
                if self.cancel():
                    yield self.progress(cancelled=True)
                    return
                if not producer_done and pending < EMBED_BATCH:
                    try:
                        event = self.queue.get(timeout=0.2 if pending == 0 else 0.02)
                    except queue.Empty:
                        event = None
                    if event is _DONE:
                        producer_done = True
                        continue
                    if isinstance(event, BaseException):
                        raise event
                    if isinstance(event, _Settled):
                        self._settle(event)
                        yield self.progress()
                        continue
                    if isinstance(event, _Parsed):
                        if self._finish_without_vectors(event):
                            yield self.progress()
                        else:
                            buffer.append(_Buffered(event))
                            pending += len(event.chunks)
                        continue
                    if pending == 0:
                        yield self.progress()  # idle heartbeat: still a cancel point
                        continue
                pending -= self._embed_batch(buffer)
                while buffer and buffer[0].embedded == len(buffer[0].parsed.chunks):
                    self._swap(buffer.popleft())
                    yield self.progress()
        finally:
            self.stop.set()
            self._drain_queue()
            # A file mid-parse can hold the thread for the pool's timeout; don't make Ctrl-C wait
            # that long. The daemon thread stops at its next step; closing the pool ends its
            # worker, and its late writes only lower an attempt count.
            thread.join(timeout=5)
            self._release_claims()

    def progress(self, cancelled: bool = False) -> SyncProgress:
        """A progress event for the work done so far."""
        elapsed = max(time.monotonic() - self.started, 1e-6)
        files_per_s = self.files_done / elapsed
        chunks_per_s = self.chunks_done / elapsed
        remaining = len(self.work) - self.files_done
        eta = remaining / files_per_s if files_per_s > 0 else None
        return SyncProgress(
            collection=self.collection_name, phase="index", files_done=self.files_done,
            files_total=len(self.work), chunks=self.chunks_done, files_per_s=files_per_s,
            chunks_per_s=chunks_per_s, eta_s=eta, current=self.current, elapsed_s=elapsed,
            cancelled=cancelled,
        )

    def _embed_batch(self, buffer: deque[_Buffered]) -> int:
        texts: list[str] = []
        spans: list[tuple[_Buffered, int]] = []
        for entry in buffer:
            left = len(entry.parsed.chunks) - entry.embedded
            take = min(left, EMBED_BATCH - len(texts))
            if take <= 0:
                continue
            start = entry.embedded
            texts.extend(c.text for c in entry.parsed.chunks[start : start + take])
            spans.append((entry, take))
            if len(texts) >= EMBED_BATCH:
                break
        if not texts:
            return 0
        vectors = self.embedder.embed(texts)
        offset = 0
        for entry, take in spans:
            entry.vectors.append(vectors[offset : offset + take])
            entry.embedded += take
            offset += take
        return len(texts)

    def _finish_without_vectors(self, parsed: _Parsed) -> bool:
        """Record a parse that yields no chunks; False when the document goes to embedding."""
        item, outcome = parsed.item, parsed.outcome
        self.current = item.display
        if parsed.rewritten:
            self.requeue.append(item)
            self._set_state(item.doc_id, "pending", "It changed while being read; it will be read again.")
        elif outcome.status == "crashed":
            attempts = self.db.execute("SELECT attempts FROM documents WHERE id = ?", [item.doc_id]).fetchone()
            crashes = int(attempts[0]) if attempts else MAX_CRASHES
            if crashes >= MAX_CRASHES:
                self._set_state(
                    item.doc_id, "quarantined",
                    f"It crashed the parser {crashes} times ({outcome.reason}); it is no longer "
                    "tried. Replace or repair the file to index it again.",
                    parsed=parsed,
                    reset_attempts=False,
                )
            else:
                self._set_state(
                    item.doc_id, "pending",
                    f"It crashed the parser ({outcome.reason}); attempt {crashes} of "
                    f"{MAX_CRASHES}, retried at the next sync.",
                    parsed=parsed,
                    reset_attempts=False,
                )
        elif outcome.status != "ok" or not parsed.chunks:
            state = "failed" if outcome.status == "failed" else "skipped"
            reason = outcome.reason or "No text found in it; nothing to index."
            self._set_state(item.doc_id, state, reason, parsed=parsed)
        else:
            return False
        self.files_done += 1
        return True

    def _set_state(
        self,
        doc_id: int,
        state: str,
        reason: str,
        parsed: _Parsed | None = None,
        reset_attempts: bool = True,
    ) -> None:
        now = time.time()
        with write_transaction(self.db):
            self.db.execute("DELETE FROM chunks WHERE document_id = ?", [doc_id])
            if parsed is not None:
                doc = parsed.outcome.document
                self.db.execute(
                    "UPDATE documents SET size = ?, mtime_ns = ?, sha256 = ?, kind = ?, pages = ?, "
                    "title = ? WHERE id = ?",
                    [parsed.stat.size, parsed.stat.mtime_ns, parsed.sha,
                     doc.kind if doc else None, len(doc.pages) if doc else None,
                     sqlite_text(doc.title if doc else None), doc_id],
                )
            self.db.execute(
                "UPDATE documents SET state = ?, reason = ?, chunk_count = 0, updated_at = ?, "
                "attempts = CASE WHEN ? THEN 0 ELSE attempts END WHERE id = ?",
                [state, sqlite_text(reason), now, reset_attempts, doc_id],
            )
            self._bump()
        self.claimed.discard(doc_id)

    def _swap(self, entry: _Buffered) -> None:
        """Replace a document's chunks and vectors in one transaction."""
        parsed = entry.parsed
        doc = parsed.outcome.document
        vectors = np.concatenate(entry.vectors) if entry.vectors else np.zeros((0, 0), np.float32)
        now = time.time()
        with write_transaction(self.db):
            self.db.execute("DELETE FROM chunks WHERE document_id = ?", [parsed.item.doc_id])
            first = int(self.db.execute("SELECT COALESCE(MAX(id), 0) + 1 FROM chunks").fetchone()[0])
            self.db.conn.executemany(
                "INSERT INTO chunks (id, document_id, ordinal, text, page, char_start, char_end, "
                "heading) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (first + i, parsed.item.doc_id, c.ordinal, sqlite_text(c.text), c.page,
                     c.char_start, c.char_end, sqlite_text(c.heading))
                    for i, c in enumerate(parsed.chunks)
                ],
            )
            self.db.conn.executemany(
                "INSERT INTO embeddings (chunk_id, vector) VALUES (?, ?)",
                [(first + i, vector_to_blob(v)) for i, v in enumerate(vectors)],
            )
            self.db.execute(
                """
                UPDATE documents SET state = 'indexed', reason = ?, attempts = 0, size = ?,
                    mtime_ns = ?, sha256 = ?, kind = ?, title = ?, pages = ?, chunk_count = ?,
                    indexed_at = ?, updated_at = ?
                WHERE id = ?
                """,
                [
                    sqlite_text("; ".join(parsed.outcome.warnings)[:500]), parsed.stat.size,
                    parsed.stat.mtime_ns, parsed.sha, doc.kind if doc else None,
                    sqlite_text(doc.title if doc else None), len(doc.pages) if doc else None,
                    len(parsed.chunks), now, now, parsed.item.doc_id,
                ],
            )
            self._bump()
        self.claimed.discard(parsed.item.doc_id)
        self.files_done += 1
        self.chunks_done += len(parsed.chunks)
        self.current = parsed.item.display

    def _settle(self, event: _Settled) -> None:
        item = event.item
        self.current = item.display
        now = time.time()
        with write_transaction(self.db):
            if event.kind == "gone":
                self.db.execute("DELETE FROM documents WHERE id = ?", [item.doc_id])
                self._bump()
            elif event.kind == "touched" and event.stat is not None:
                self.db.execute(
                    "UPDATE documents SET size = ?, mtime_ns = ?, updated_at = ? WHERE id = ?",
                    [event.stat.size, event.stat.mtime_ns, now, item.doc_id],
                )
            else:
                self.db.execute("DELETE FROM chunks WHERE document_id = ?", [item.doc_id])
                self.db.execute(
                    "UPDATE documents SET state = 'failed', reason = ?, chunk_count = 0, "
                    "sha256 = NULL, updated_at = ? WHERE id = ?",
                    [sqlite_text(event.reason), now, item.doc_id],
                )
                self._bump()
        self.files_done += 1

    def _bump(self) -> None:
        self.db.execute(
            "UPDATE collections SET generation = generation + 1 WHERE id = ?", [self.collection_id]
        )

    def _drain_queue(self) -> None:
        while True:
            try:
                self.queue.get_nowait()
            except queue.Empty:
                return

    def _release_claims(self) -> None:
        """Claims this run still holds were interrupted by a cancel, not a crash: undo them."""
        if not self.claimed:
            return
        ids = sorted(self.claimed)
        with write_transaction(self.db):
            self.db.conn.executemany(
                "UPDATE documents SET state = 'pending', attempts = MAX(attempts - 1, 0), "
                "reason = 'Indexing was stopped before it was done; it resumes at the next sync.' "
                "WHERE id = ? AND state = 'in_progress'",
                [(i,) for i in ids],
            )
        self.claimed.clear()

    # ---- parse thread ---------------------------------------------------------------------

    def _put(self, event: object) -> bool:
        while not self.stop.is_set():
            try:
                self.queue.put(event, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _produce(self, tokenizer: ChunkTokenizer, max_tokens: int) -> None:
        lock = threading.Lock()
        claim_db = open_library_db(self.db_path, migrate_schema=False, check_same_thread=False)
        claims: dict[str, tuple[WorkItem, str, FileStat]] = {}
        try:
            paths = self._claimed_paths(claim_db, lock, claims)
            for path, outcome in self.pool.parse_many(paths):
                item, sha, st = claims.pop(str(path))
                if outcome.status != "crashed":
                    with lock, write_transaction(claim_db):
                        # The parser came back: whatever happens next is not this file's fault.
                        claim_db.execute(
                            "UPDATE documents SET attempts = MAX(attempts - 1, 0) WHERE id = ?",
                            [item.doc_id],
                        )
                try:
                    sha_after, _ = sha256_file(item.path)
                except OSError:
                    sha_after = ""
                chunks: list[Chunk] = []
                if outcome.status == "ok" and outcome.document is not None and sha_after == sha:
                    chunks = chunk_pages(outcome.document.pages, tokenizer, max_tokens)
                if not self._put(_Parsed(item, outcome, sha, st, chunks, sha_after != sha)):
                    break
                if self.stop.is_set():
                    break
        except BaseException as error:  # surfaces in the owner thread, never lost
            self._put(error)
        finally:
            with lock:
                claim_db.close()
            self._put(_DONE)

    def _claimed_paths(
        self,
        claim_db: sqlite_utils.Database,
        lock: threading.Lock,
        claims: dict[str, tuple[WorkItem, str, FileStat]],
    ) -> Iterator[Path]:
        for item in self.work:
            if self.stop.is_set():
                return
            try:
                sha, st = sha256_file(item.path)
            except FileNotFoundError:
                self._put(_Settled(item, "gone"))
                continue
            except OSError as error:
                why = error.strerror or str(error)
                self._put(_Settled(item, "unreadable", f"Cannot read it ({why}). Check its permissions."))
                continue
            if item.old_state in SETTLED and item.old_sha == sha:
                self._put(_Settled(item, "touched", sha=sha, stat=st))
                continue
            with lock, write_transaction(claim_db):
                claim_db.execute(
                    "UPDATE documents SET state = 'in_progress', updated_at = ?, attempts = "
                    "CASE WHEN ? = 'quarantined' THEN 1 ELSE attempts + 1 END WHERE id = ?",
                    [time.time(), item.old_state, item.doc_id],
                )
            self.claimed.add(item.doc_id)
            claims[str(Path(item.path))] = (item, sha, st)
            yield Path(item.path)
