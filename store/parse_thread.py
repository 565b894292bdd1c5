"""The helper thread of a sync: confirm each file by SHA-256, claim it, parse it, chunk it.

Every read goes through ``parsers.fsread`` and insists on the file the scan saw (device, inode,
size plus a margin), so a file swapped between the scan and the read for a FIFO, a device, a
link out of the folder or an endless file ends ``skipped`` or read again, never in a hang. The
thread hands ``Parsed`` and ``Settled`` events to the owner thread through a bounded queue, and
holds back while the parsed text waiting there passes ``HELD_CHARS``, so a folder of huge files
costs the memory of about one of them.
"""

from __future__ import annotations

import os
import queue
import stat
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

import sqlite_utils

from .chunking import DEFAULT_MAX_CHUNKS, Chunk, chunk_document
from .db import open_library_db, write_transaction
from .embedder import ChunkTokenizer
from .parse_pools import ParsePoolLike, ParseRequest
from .parsers.fsread import FileStat, sha256_file
from .parsers.types import ParseOutcome
from .parsers.verdicts import FileBroken, FileChanged, FileSkipped, FileVanished
from .reconcile import SETTLED, WorkItem
from .scan import display_path
from .stall_guard import Stalled, StallGuard, Tick
from .sync_progress import ActivityBoard

# Characters of parsed text that may wait for the embedder; one larger document still passes.
HELD_CHARS = 4_000_000

SettledKind = Literal[
    "gone", "touched", "failed", "skipped", "changed", "folder_gone", "unavailable"
]
AfterParse = Literal["same", "changed", "folder_gone", "stalled"]


@dataclass
class Parsed:
    """A file the pool parsed, chunked; ``rewritten`` when it changed while being read."""

    item: WorkItem
    outcome: ParseOutcome  # its document's pages are dropped once chunked (``page_count``)
    sha: str
    stat: FileStat
    chunks: list[Chunk]
    rewritten: bool
    page_count: int | None = None
    held_chars: int = 0


@dataclass
class Settled:
    """A file settled without (or after) parsing: vanished, only touched, refused, unreadable,
    changed; ``folder_gone`` when its whole folder went away mid-sync (every document of the
    folder becomes unavailable); ``unavailable`` when reading it stalled."""

    item: WorkItem
    kind: SettledKind
    reason: str = ""
    sha: str | None = None
    stat: FileStat | None = None


DONE = object()


def _where(page: int | None) -> str:
    return "the text" if page is None else f"page {page}"


class HeldText:
    """How many characters of parsed text wait for the owner thread; the parse thread waits
    while adding the next document would pass ``limit`` (unless nothing waits at all)."""

    def __init__(self, limit: int = HELD_CHARS) -> None:
        self.limit = limit
        self.chars = 0
        self._room = threading.Condition()

    def reserve(self, chars: int, stop: threading.Event) -> None:
        """Wait for room for ``chars`` more (or for ``stop``), then count them."""
        with self._room:
            while self.chars > 0 and self.chars + chars > self.limit and not stop.is_set():
                self._room.wait(0.1)
            self.chars += chars

    def release(self, chars: int) -> None:
        """The owner thread is done with ``chars`` characters."""
        if chars:
            with self._room:
                self.chars -= chars
                self._room.notify_all()


class ParseThread:
    """Hash, claim, parse and chunk ``work``, putting events on ``events`` (then ``DONE``).

    Args:
        db_path: The library database; the thread opens its own connection for claims.
        work: The files to look at, with what the scan saw of each.
        pool: The parse pool (used from this thread only).
        events: Where events go; ``stop`` makes the thread end at its next step.
        claimed: Documents claimed ``in_progress`` and not yet settled (shared with the owner).
        max_file_bytes: Larger files are skipped as too large, before they are hashed.
        board: Where the thread says which file it reads or parses, and since when.
    """

    def __init__(
        self,
        db_path: Path,
        work: list[WorkItem],
        pool: ParsePoolLike,
        events: queue.Queue[object],
        stop: threading.Event,
        claimed: set[int],
        max_file_bytes: int,
        board: ActivityBoard | None = None,
    ) -> None:
        self.db_path, self.work, self.pool = db_path, work, pool
        self.events, self.stop, self.claimed = events, stop, claimed
        self.max_file_bytes = max_file_bytes
        self.board = board or ActivityBoard()
        self.held = HeldText()
        self.guard = StallGuard(name="bastion-sync-read")
        #: Roots where a read stalled: their remaining files are not read in this pass.
        self.stalled_roots: set[str] = set()
        #: Index in ``work`` of the file the thread last began (-1: none yet); read by
        #: ``count_ahead``, which counts only the files past it.
        self.position = -1

    def put(self, event: object) -> bool:
        """Queue ``event`` unless the run stops first."""
        while not self.stop.is_set():
            try:
                self.events.put(event, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def run(self, tokenizer: ChunkTokenizer, max_tokens: int) -> None:
        """The thread's body: every file of ``work`` ends as one event."""
        lock = threading.Lock()
        claim_db = open_library_db(self.db_path, migrate_schema=False, check_same_thread=False)
        claims: dict[str, tuple[WorkItem, str, FileStat]] = {}
        try:
            requests = self._claimed(claim_db, lock, claims)
            for path, outcome in self.pool.parse_many(requests):
                item, sha, st = claims.pop(str(path))
                if outcome.status != "crashed":
                    with lock, write_transaction(claim_db):
                        # The parser came back: whatever happens next is not this file's fault.
                        claim_db.execute(
                            "UPDATE documents SET attempts = MAX(attempts - 1, 0) WHERE id = ?",
                            [item.doc_id],
                        )
                after = self._after_parse(item, sha, st)
                if after in ("folder_gone", "stalled"):
                    handed = self.put(self._lost(item, after))
                else:
                    handed = self._hand_over(
                        item, outcome, sha, st, after == "changed", tokenizer, max_tokens
                    )
                self.board.end(item.doc_id)
                if not handed:
                    break
        except BaseException as error:  # surfaces in the owner thread, never lost
            self.put(error)
        finally:
            self.guard.close()
            with lock:
                claim_db.close()
            self.put(DONE)

    def _after_parse(self, item: WorkItem, sha: str, st: FileStat) -> AfterParse:
        """Is the file still the one that was parsed? Size, mtime and inode first (a stat),
        then the hash, which also catches a rewrite of the same size within one mtime tick."""

        def look(tick: Tick) -> AfterParse:
            try:
                if FileStat.of(os.lstat(item.path)) != st:
                    return "changed"
                sha_after, _ = sha256_file(item.path, st, self.max_file_bytes, tick)
            except (FileVanished, FileNotFoundError):
                return "folder_gone" if _root_gone(item.root) else "changed"
            except (FileBroken, FileSkipped, OSError):
                return "changed"
            return "same" if sha_after == sha else "changed"

        try:
            return self.guard.run(look, self.stop)
        except Stalled:
            return "stalled"

    def _lost(self, item: WorkItem, why: Literal["folder_gone", "stalled"]) -> Settled:
        """The event for a file whose folder is gone or whose read stalled."""
        if why == "folder_gone":
            return Settled(item, "folder_gone", folder_gone_reason(item.root))
        self.stalled_roots.add(item.root)
        return Settled(item, "unavailable", (
            f"Reading it stopped answering for {self.guard.stall_s:g} s (a network drive that "
            "stalled?). It is kept as it was and read again at the next sync."))

    def _hand_over(
        self,
        item: WorkItem,
        outcome: ParseOutcome,
        sha: str,
        st: FileStat,
        rewritten: bool,
        tokenizer: ChunkTokenizer,
        max_tokens: int,
    ) -> bool:
        chunks: list[Chunk] = []
        document = outcome.document
        page_count = len(document.pages) if document is not None else None
        if outcome.status == "ok" and document is not None and not rewritten:
            chunks, cut = chunk_document(document.pages, tokenizer, max_tokens, DEFAULT_MAX_CHUNKS)
            if cut:
                outcome = replace(outcome, warnings=[*outcome.warnings, (
                    f"only the first {len(chunks):,} chunks (to character "
                    f"{chunks[-1].char_end:,} of {_where(chunks[-1].page)}) are indexed; the "
                    "rest was left out"
                )])
        if document is not None:
            # The chunks carry the text from here on; the pages would only double the memory.
            outcome = replace(outcome, document=replace(document, pages=[]))
        held = sum(len(c.text) for c in chunks)
        self.held.reserve(held, self.stop)
        parsed = Parsed(item, outcome, sha, st, chunks, rewritten, page_count, held)
        if not self.put(parsed):
            self.held.release(held)
            return False
        return not self.stop.is_set()

    def _claimed(
        self,
        claim_db: sqlite_utils.Database,
        lock: threading.Lock,
        claims: dict[str, tuple[WorkItem, str, FileStat]],
    ) -> Iterator[ParseRequest]:
        for index, item in enumerate(self.work):
            if self.stop.is_set():
                return
            self.position = index
            if item.root in self.stalled_roots:
                self.put(Settled(item, "unavailable", (
                    f"Not read: its folder {display_path(item.root)} stopped answering in this "
                    "sync (a network drive that stalled?). It is kept as it was and read again "
                    "at the next sync.")))
                continue
            self.board.begin(item.doc_id, "reading", item.display)
            try:
                sha, st = self._hash(item)
            except Stalled:
                self.put(self._lost(item, "stalled"))
                continue
            except FileVanished:
                self.put(self._vanished(item))
                continue
            except FileChanged as verdict:
                self.put(Settled(item, "changed", str(verdict)))
                continue
            except FileSkipped as verdict:
                self.put(Settled(item, "skipped", str(verdict)))
                continue
            except FileBroken as verdict:
                self.put(Settled(item, "failed", str(verdict)))
                continue
            except FileNotFoundError:
                self.put(self._vanished(item))
                continue
            except OSError as error:
                why = error.strerror or str(error)
                self.put(Settled(item, "failed", f"Cannot read it ({why}). Check its permissions."))
                continue
            finally:
                self.board.end(item.doc_id)
            if item.old_state in SETTLED and item.old_sha == sha:
                self.put(Settled(item, "touched", sha=sha, stat=st))
                continue
            with lock, write_transaction(claim_db):
                claim_db.execute(
                    "UPDATE documents SET state = 'in_progress', updated_at = ?, attempts = "
                    "CASE WHEN ? = 'quarantined' THEN 1 ELSE attempts + 1 END WHERE id = ?",
                    [time.time(), item.old_state, item.doc_id],
                )
            self.claimed.add(item.doc_id)
            claims[str(Path(item.path))] = (item, sha, st)
            # The pool takes the next file when a worker is free: parsing starts now.
            self.board.begin(item.doc_id, "parsing", item.display)
            yield ParseRequest(Path(item.path), st)

    def _hash(self, item: WorkItem) -> tuple[str, FileStat]:
        """The file's hash and fstat, read under the stall guard."""
        path, expected, limit = item.path, item.stat, self.max_file_bytes
        return self.guard.run(lambda tick: sha256_file(path, expected, limit, tick), self.stop)

    def _vanished(self, item: WorkItem) -> Settled:
        """A file gone before it was read: deleted, or its whole folder went away."""
        try:
            gone = self.guard.run(lambda tick: _root_gone(item.root), self.stop)
        except Stalled:
            return self._lost(item, "stalled")
        return Settled(item, "folder_gone", folder_gone_reason(item.root)) if gone else Settled(item, "gone")


def folder_gone_reason(root: str) -> str:
    """Why the documents of a folder that went away during a sync are unavailable."""
    return (
        f"The folder {display_path(root)} is gone (unplugged or removed while it was being "
        "indexed?). Its documents are kept, not searched, and come back when it returns."
    )


def _root_gone(root: str) -> bool:
    """True when ``root`` is no longer a folder (an unknown root is never judged gone)."""
    if not root:
        return False
    try:
        return not stat.S_ISDIR(os.stat(root).st_mode)
    except OSError:
        return True
