"""The indexing pipeline of one collection: hash → claim → parse → chunk → embed → swap.

A helper thread (``parse_thread.ParseThread``) confirms changes by SHA-256, claims each document
in its own committed transaction (``in_progress``, attempts + 1) right before it enters the
parse pool, and chunks what comes back. The owner thread embeds chunks in batches across
documents, so the embedder never waits for small files, and swaps each document's chunks and
vectors in one transaction. ``Pipeline.run`` is a generator: every event it yields is a progress
report and a cancel point. An embedding batch runs on a helper thread while the generator
reports every ``HEARTBEAT_S``, and waiting for a parse does too, so a huge document is never
silent: the event names the file, what is done to it and for how long (``sync_progress``).
"""

from __future__ import annotations

import itertools
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Generator
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import sqlite_utils
from numpy.typing import NDArray

from .count_ahead import CountAhead, worth_counting
from .db import write_transaction
from .document_fts import write_document_text
from .embedder import Embedder
from .library_types import MAX_CRASHES, SyncProgress
from .parse_pools import ParsePoolLike
from .parse_thread import DONE, Parsed, ParseThread, Settled
from .parsers.limits import DEFAULT_MAX_BYTES
from .parsers.version import PARSER_VERSION
from .reconcile import WorkItem, mark_unavailable
from .sync_progress import Activity, ActivityBoard, ProgressMeter
from .vector_index import vector_to_blob

EMBED_BATCH = 64
# How often a progress event comes while one embedding batch runs.
HEARTBEAT_S = 0.5
_QUEUE_DEPTH = 16


Cancel = Callable[[], bool]


@dataclass
class _Buffered:
    parsed: Parsed
    vectors: list[NDArray[np.float32]] = field(default_factory=list)
    embedded: int = 0
    started: float | None = None  # when its first batch went to the embedder (monotonic)


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
        max_file_bytes: int = DEFAULT_MAX_BYTES,
        before: tuple[int, int] = (0, 0),
        count_pool_factory: Callable[[], ParsePoolLike] | None = None,
    ) -> None:
        self.db, self.db_path = db, db_path
        self.collection_id, self.collection_name = collection
        self.work, self.embedder, self.pool, self.cancel = work, embedder, pool, cancel
        self.queue: queue.Queue[object] = queue.Queue(maxsize=_QUEUE_DEPTH)
        self.stop = threading.Event()
        self.claimed: set[int] = set()
        #: Files that changed while being read, to read again after a fresh scan.
        self.requeue: list[WorkItem] = []
        self.board = ActivityBoard()
        self.parser = ParseThread(
            db_path, work, pool, self.queue, self.stop, self.claimed, max_file_bytes, self.board
        )
        self.files_done = 0
        self.chunks_done = 0
        self.chunks_embedded = 0  # progress inside a long document, before its swap
        #: Files and bytes of the collection done before this pass began.
        self.files_before, self.bytes_before = before
        self.meter = ProgressMeter(work, max_file_bytes)
        #: Counts the chunks of files not parsed yet, for the ETA (None: not worth it here).
        self.counter = CountAhead(
            work, count_pool_factory, lambda: self.parser.position, self.stop,
            self.meter.counted, max_file_bytes, lambda root: root in self.parser.stalled_roots,
        ) if count_pool_factory is not None and worth_counting(work, max_file_bytes) else None
        self.started = self.meter.started
        self.current: str | None = None
        self.buffer: deque[_Buffered] = deque()
        self._embedding: ThreadPoolExecutor | None = None

    # ---- owner thread -------------------------------------------------------------------

    def run(self) -> Generator[SyncProgress, None, None]:
        """Index the work list, yielding progress; cancel or close to stop cleanly."""
        tokenizer = self.embedder.tokenizer()
        max_tokens = self.embedder.max_tokens
        thread = threading.Thread(
            target=self.parser.run, args=(tokenizer, max_tokens), name="bastion-parse", daemon=True
        )
        buffer = self.buffer
        pending = 0
        producer_done = False
        thread.start()
        if self.counter is not None:
            threading.Thread(
                target=self.counter.run, args=(tokenizer, max_tokens), name="bastion-count",
                daemon=True,
            ).start()
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
                    if event is DONE:
                        producer_done = True
                        continue
                    if isinstance(event, BaseException):
                        raise event
                    if isinstance(event, Settled):
                        self._settle(event)
                        yield self.progress()
                        continue
                    if isinstance(event, Parsed):
                        if self._finish_without_vectors(event):
                            yield self.progress()
                        else:
                            buffer.append(_Buffered(event))
                            self.meter.parsed(event.item.doc_id, 0, len(event.chunks))
                            pending += len(event.chunks)
                        continue
                    if pending == 0:
                        yield self.progress()  # idle heartbeat: still a cancel point
                        continue
                pending -= yield from self._embed_batch(buffer)
                swapped = False
                while buffer and buffer[0].embedded == len(buffer[0].parsed.chunks):
                    self._swap(buffer.popleft())
                    swapped = True
                    yield self.progress()
                if not swapped:
                    yield self.progress()  # a long document embeds batch by batch: not silence
        finally:
            self.stop.set()
            self._drain_queue()
            # A file mid-parse can hold the thread for the pool's timeout; don't make Ctrl-C wait
            # that long. The daemon thread stops at its next step; closing the pool ends its
            # worker, and its late writes only lower an attempt count.
            thread.join(timeout=5)
            if self._embedding is not None:
                self._embedding.shutdown(wait=True)  # at most the batch under way
            self._release_claims()

    def progress(self, cancelled: bool = False) -> SyncProgress:
        """A progress event for the work done so far."""
        now = time.monotonic()
        elapsed = max(now - self.started, 1e-6)
        bytes_per_s, eta = self.meter.measure(now)
        activity = self._activity()
        if activity is not None:
            self.current = activity.display
        return SyncProgress(
            collection=self.collection_name, phase="index", files_done=self.files_done,
            files_total=len(self.work), chunks=self.chunks_embedded,
            files_per_s=self.files_done / elapsed, chunks_per_s=self.chunks_embedded / elapsed,
            eta_s=eta, current=self.current, elapsed_s=elapsed,
            chunks_expected=self.meter.chunks_expected,
            cancelled=cancelled, bytes_done=self.meter.bytes_done,
            bytes_total=self.meter.bytes_total, bytes_per_s=bytes_per_s,
            files_before=self.files_before, bytes_before=self.bytes_before,
            action=activity.action if activity else None,
            action_s=now - activity.since if activity else 0.0,
        )

    def _activity(self) -> Activity | None:
        """The document being embedded, else the one the parse thread has spent longest on."""
        head = self.buffer[0] if self.buffer else None
        if head is not None and head.started is not None:
            return Activity("embedding", head.parsed.item.display, head.started)
        return self.parser.board.oldest()

    def _embed_batch(self, buffer: deque[_Buffered]) -> Generator[SyncProgress, None, int]:
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
        now = time.monotonic()
        for entry, _ in spans:
            entry.started = entry.started or now
        self.current = spans[0][0].parsed.item.display
        if self._embedding is None:
            self._embedding = ThreadPoolExecutor(1, thread_name_prefix="bastion-embed")
        batch = self._embedding.submit(self.embedder.embed, texts)
        while True:
            try:
                vectors = batch.result(timeout=HEARTBEAT_S)
                break
            except FutureTimeout:
                yield self.progress()  # the batch goes on; the consumer hears from us
        self.chunks_embedded += len(texts)
        offset = 0
        for entry, take in spans:
            entry.vectors.append(vectors[offset : offset + take])
            entry.embedded += take
            offset += take
            self.meter.parsed(entry.parsed.item.doc_id, entry.embedded, len(entry.parsed.chunks))
        return len(texts)

    def _finish_without_vectors(self, parsed: Parsed) -> bool:
        """Record a parse that yields no chunks; False when the document goes to embedding."""
        item, outcome = parsed.item, parsed.outcome
        self.current = item.display
        if parsed.chunks and outcome.status == "ok" and not parsed.rewritten:
            return False
        self.parser.held.release(parsed.held_chars)
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
        else:
            state = "failed" if outcome.status == "failed" else "skipped"
            reason = outcome.reason or "No text found in it; nothing to index."
            self._set_state(item.doc_id, state, reason, parsed=parsed)
        self.files_done += 1
        self.meter.settled(item.doc_id)
        return True

    def _set_state(
        self,
        doc_id: int,
        state: str,
        reason: str,
        parsed: Parsed | None = None,
        reset_attempts: bool = True,
    ) -> None:
        now = time.time()
        with write_transaction(self.db):
            self.db.execute("DELETE FROM chunks WHERE document_id = ?", [doc_id])
            if parsed is not None:
                doc = parsed.outcome.document
                self.db.execute(
                    "UPDATE documents SET size = ?, mtime_ns = ?, sha256 = ?, kind = ?, pages = ?, "
                    "title = ?, parser_version = ? WHERE id = ?",
                    [parsed.stat.size, parsed.stat.mtime_ns, parsed.sha,
                     doc.kind if doc else None, parsed.page_count,
                     sqlite_text(doc.title if doc else None), PARSER_VERSION, doc_id],
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
        # Rows are generated as SQLite takes them: one more copy of every vector and chunk
        # would cost tens of megabytes for a huge document.
        vectors = itertools.chain.from_iterable(entry.vectors)
        now = time.time()
        with write_transaction(self.db):
            self.db.execute("DELETE FROM chunks WHERE document_id = ?", [parsed.item.doc_id])
            first = int(self.db.execute("SELECT COALESCE(MAX(id), 0) + 1 FROM chunks").fetchone()[0])
            self.db.conn.executemany(
                "INSERT INTO chunks (id, document_id, ordinal, text, page, char_start, char_end, "
                "heading) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    (first + i, parsed.item.doc_id, c.ordinal, sqlite_text(c.text), c.page,
                     c.char_start, c.char_end, sqlite_text(c.heading))
                    for i, c in enumerate(parsed.chunks)
                ),
            )
            self.db.conn.executemany(
                "INSERT INTO embeddings (chunk_id, vector) VALUES (?, ?)",
                ((first + i, vector_to_blob(v)) for i, v in enumerate(vectors)),
            )
            write_document_text(self.db, parsed.item.doc_id)
            self.db.execute(
                """
                UPDATE documents SET state = 'indexed', reason = ?, attempts = 0, size = ?,
                    mtime_ns = ?, sha256 = ?, kind = ?, title = ?, pages = ?, chunk_count = ?,
                    indexed_at = ?, updated_at = ?, parser_version = ?
                WHERE id = ?
                """,
                [
                    sqlite_text("; ".join(parsed.outcome.warnings)[:500]), parsed.stat.size,
                    parsed.stat.mtime_ns, parsed.sha, doc.kind if doc else None,
                    sqlite_text(doc.title if doc else None), parsed.page_count,
                    len(parsed.chunks), now, now, PARSER_VERSION, parsed.item.doc_id,
                ],
            )
            self._bump()
        self.claimed.discard(parsed.item.doc_id)
        self.parser.held.release(parsed.held_chars)
        self.files_done += 1
        self.meter.settled(parsed.item.doc_id)
        self.chunks_done += len(parsed.chunks)
        self.current = parsed.item.display

    def _settle(self, event: Settled) -> None:
        item = event.item
        self.current = item.display
        now = time.time()
        if event.kind == "changed":
            self.requeue.append(item)
            self._set_state(
                item.doc_id, "pending",
                f"It changed after the folder was scanned ({event.reason}); it will be read again.",
            )
            self.files_done += 1
            self.meter.settled(item.doc_id)
            return
        with write_transaction(self.db):
            if event.kind in ("folder_gone", "unavailable"):
                # Never deleted: an unplugged drive or a stalled share comes back.
                mark_unavailable(self.db, event.reason, doc_id=item.doc_id)
                if event.kind == "folder_gone":
                    mark_unavailable(self.db, event.reason, folder_id=item.folder_id)
                self._bump()
                self.claimed.discard(item.doc_id)
            elif event.kind == "gone":
                self.db.execute("DELETE FROM documents WHERE id = ?", [item.doc_id])
                self._bump()
            elif event.kind == "touched" and event.stat is not None:
                self.db.execute(
                    "UPDATE documents SET size = ?, mtime_ns = ?, updated_at = ? WHERE id = ?",
                    [event.stat.size, event.stat.mtime_ns, now, item.doc_id],
                )
            else:
                # Refused (swapped for a link, a FIFO or a device; too large) or unreadable.
                # No size is kept, so the next sync looks again: refusing costs an open, and a
                # raised size limit or repaired permissions take effect.
                state = "skipped" if event.kind == "skipped" else "failed"
                if self.db.execute("DELETE FROM chunks WHERE document_id = ?", [item.doc_id]).rowcount:
                    self._bump()
                self.db.execute(
                    "UPDATE documents SET state = ?, reason = ?, chunk_count = 0, size = NULL, "
                    "mtime_ns = NULL, sha256 = NULL, updated_at = ? WHERE id = ?",
                    [state, sqlite_text(event.reason), now, item.doc_id],
                )
        self.files_done += 1
        self.meter.settled(item.doc_id)

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

