"""Counting ahead: the chunks of files the sync has not parsed yet, for an ETA that holds.

A sync knows a file's chunk count only once it has parsed it, and guessing the rest from the
bytes read so far is poor on a mixed folder: a 3 MB novel makes a chunk every ~650 bytes, a
scanned PDF none (``bench/sync_progress_bench.py --replay`` measured guesses from 9× too low to
2.3× too high). ``CountAhead`` runs a second parse pool on its own thread, walking the same
work list ahead of the sync's parse thread, and hands each file's chunk count to the
``ProgressMeter``. Nothing it does is stored: counting reads files through the same sandbox
(time and memory caps, insisting on the file the scan saw), never writes to the library, and a
file that crashes or hangs the counter is simply not counted; the sync meets it on its own.

It runs at low priority, so it takes what the embedder leaves: on Linux the thread lowers its
own priority before it starts the pool, and the pool's worker processes, started from that
thread, inherit it. Elsewhere it runs at normal priority.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from .chunking import DEFAULT_MAX_CHUNKS, chunk_document
from .embedder import ChunkTokenizer
from .parse_pools import ParsePoolLike, ParseRequest
from .reconcile import WorkItem

# Niceness of the counting thread and its workers: the embedder keeps ~90 % of a contended core.
NICENESS = 10
# Counting pays only when the sync has this many files, or this many bytes, to go through.
MIN_FILES = 20
MIN_BYTES = 4 * 1024 * 1024


def worth_counting(work: Sequence[WorkItem], max_file_bytes: int) -> bool:
    """Whether a pass over ``work`` is long enough for a count ahead to pay for its worker."""
    if len(work) < 2:
        return False
    readable = sum(item.stat.size for item in work if item.stat.size <= max_file_bytes)
    return len(work) >= MIN_FILES or readable >= MIN_BYTES


class CountAhead:
    """Parse and chunk the files of ``work`` past ``frontier()``, reporting their chunk counts.

    Args:
        work: The sync pass's files, in the order its parse thread takes them.
        pool_factory: Builds the counting pool (called on the counting thread; closed by it).
        frontier: Index in ``work`` of the file the sync's parse thread last began.
        stop: Set when the sync pass ends; the thread ends at its next file.
        on_count: Called with (document id, chunks) for each file counted.
        max_file_bytes: Larger files are skipped unread by the sync: not counted.
        skip_root: True for a folder the sync found stalled: its files are not read here.
    """

    def __init__(
        self,
        work: Sequence[WorkItem],
        pool_factory: Callable[[], ParsePoolLike],
        frontier: Callable[[], int],
        stop: threading.Event,
        on_count: Callable[[int, int], None],
        max_file_bytes: int,
        skip_root: Callable[[str], bool] = lambda root: False,
    ) -> None:
        self.work, self.pool_factory, self.frontier = work, pool_factory, frontier
        self.stop, self.on_count = stop, on_count
        self.max_file_bytes, self.skip_root = max_file_bytes, skip_root
        #: Files counted (for tests and benchmarks).
        self.counted = 0

    def run(self, tokenizer: ChunkTokenizer, max_tokens: int) -> None:
        """The thread's body; it never raises (a count is a hint, never a reason to fail)."""
        lower_thread_priority(NICENESS)
        with contextlib.suppress(Exception):
            # Fast tokenizers are not safe to share between threads: this thread's own copy.
            copy = getattr(tokenizer, "copy", None)
            tokenizer = copy() if callable(copy) else tokenizer
            pool = self.pool_factory()
            try:
                self._count(pool, tokenizer, max_tokens)
            finally:
                pool.close()

    def _count(self, pool: ParsePoolLike, tokenizer: ChunkTokenizer, max_tokens: int) -> None:
        ids: dict[str, int] = {}
        for path, outcome in pool.parse_many(self._requests(ids)):
            doc_id = ids.pop(str(path), None)
            if self.stop.is_set():
                return
            if doc_id is None or outcome.status == "crashed":
                continue  # not known: the sync will find out
            chunks = 0
            if outcome.status == "ok" and outcome.document is not None:
                chunks = len(chunk_document(
                    outcome.document.pages, tokenizer, max_tokens, DEFAULT_MAX_CHUNKS
                )[0])
            self.on_count(doc_id, chunks)
            self.counted += 1

    def _requests(self, ids: dict[str, int]) -> Iterator[ParseRequest]:
        for index, item in enumerate(self.work):
            if self.stop.is_set():
                return
            if (
                index <= self.frontier()
                or item.stat.size > self.max_file_bytes
                or self.skip_root(item.root)
            ):
                continue
            ids[str(Path(item.path))] = item.doc_id
            yield ParseRequest(Path(item.path), item.stat)


def lower_thread_priority(niceness: int) -> None:
    """Lower the calling thread's priority by ``niceness`` (Linux; elsewhere nothing).

    Linux keeps a niceness per thread, and a process started from a thread inherits it.
    """
    if not sys.platform.startswith("linux"):
        return
    thread = threading.get_native_id()
    with contextlib.suppress(OSError):
        current = os.getpriority(os.PRIO_PROCESS, thread)
        os.setpriority(os.PRIO_PROCESS, thread, min(19, current + niceness))
