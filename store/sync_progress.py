"""How far a sync is, in bytes, and what it is doing right now.

A file's work is its size in bytes: half of it is done when its parse comes back, the other
half as its chunks are embedded, all of it once it is settled. The rate is measured over the
last ``RATE_WINDOW_S`` seconds, so the estimate follows a change of pace (a folder of big PDFs
after one of notes) instead of the whole run's average; bytes, not files, because one file of
3,633 may be a 400-page report.

``ActivityBoard`` is shared by the parse thread and the owner thread: each says which file it
is reading, parsing or embedding and since when, so a progress event can say "parsing
report.pdf · 14 s" while that one file takes its time.

The chunks still to come from files not parsed yet are what the ETA is least sure of: a byte of
plain text makes a hundred times the chunks a byte of a scanned PDF does. ``count_ahead``
parses those files once more, ahead of the sync, only to count their chunks; each count it
hands in (``ProgressMeter.counted``) replaces the guess for that file, and the files counted so
far also give the rate that guesses the rest.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

from .library_types import SyncAction
from .reconcile import WorkItem

# The share of a file's bytes counted done when its parse comes back; embedding is the rest.
PARSE_SHARE = 0.5
RATE_WINDOW_S = 30.0
# Below this much measured time the window says little: the whole run's average is used.
_MIN_WINDOW_S = 3.0
_SAMPLE_EVERY_S = 0.5


@dataclass(frozen=True)
class Activity:
    """One file being worked on: what is done to it, and since when (monotonic seconds)."""

    action: SyncAction
    display: str
    since: float


class ActivityBoard:
    """The files being worked on now, by document id (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._now: dict[int, Activity] = {}

    def begin(self, key: int, action: SyncAction, display: str) -> None:
        """``key`` is now being ``action``-ed (from now on)."""
        with self._lock:
            self._now[key] = Activity(action, display, time.monotonic())

    def end(self, key: int) -> None:
        """Nothing is done to ``key`` any more."""
        with self._lock:
            self._now.pop(key, None)

    def oldest(self) -> Activity | None:
        """The activity that has taken longest so far (None: nothing under way)."""
        with self._lock:
            return min(self._now.values(), key=lambda a: a.since, default=None)


class ProgressMeter:
    """How far one pass over a work list is, and how long the rest will take.

    Parsing and embedding run side by side, so the time left is the longer of the two: the
    bytes not parsed yet at the recent parse rate, and the chunks not embedded yet at the recent
    embedding rate. Those chunks are the ones parsed and not embedded, the ones counted ahead in
    files not parsed yet, and, for the bytes neither parsed nor counted, a guess at the
    chunks-per-byte of all files parsed or counted so far.

    ``counted`` may be called from another thread; everything else from the owner thread.

    Args:
        work: The files of the pass.
        max_file_bytes: Files larger than this are skipped unread: they weigh nothing.
    """

    def __init__(self, work: Iterable[WorkItem], max_file_bytes: int) -> None:
        self.weights = {
            item.doc_id: item.stat.size if item.stat.size <= max_file_bytes else 0 for item in work
        }
        self.bytes_total = sum(self.weights.values())
        self.started = time.monotonic()
        self.bytes_parsed = 0
        self.chunks_known = 0
        self.chunks_embedded = 0
        self._settled = 0
        self._docs: dict[int, tuple[int, int]] = {}  # parsed, not settled: (embedded, chunks)
        self._seen: set[int] = set()
        self._lock = threading.Lock()  # guards the counts ahead
        self._ahead: dict[int, int] = {}  # counted ahead, not parsed yet: chunks
        self.bytes_ahead = 0
        self.chunks_ahead = 0
        # (time, bytes done, bytes parsed, chunks embedded)
        self._samples: deque[tuple[float, float, float, float]] = deque([(self.started, 0, 0, 0)])

    @property
    def bytes_done(self) -> int:
        """Bytes of settled files plus the done share of files under way."""
        partial = 0.0
        for doc_id, (embedded, chunks) in self._docs.items():
            share = PARSE_SHARE + (1 - PARSE_SHARE) * (embedded / chunks if chunks else 0.0)
            partial += self.weights.get(doc_id, 0) * share
        return min(self.bytes_total, self._settled + round(partial))

    def counted(self, doc_id: int, chunks: int) -> None:
        """``doc_id``, not parsed yet, will make ``chunks`` chunks (a count ahead)."""
        with self._lock:
            if doc_id in self._seen or doc_id in self._ahead or doc_id not in self.weights:
                return
            self._ahead[doc_id] = chunks
            self.bytes_ahead += self.weights[doc_id]
            self.chunks_ahead += chunks

    @property
    def chunks_expected(self) -> int:
        """Chunks embedded so far plus those still to come (a guess for bytes not counted)."""
        return self.chunks_embedded + round(self._chunks_left())

    def _first_sight(self, doc_id: int) -> None:
        """The sync itself reached ``doc_id``: its count ahead, if any, is not ahead any more."""
        self.bytes_parsed += self.weights.get(doc_id, 0)
        with self._lock:  # a count coming in now must see the file as reached
            self._seen.add(doc_id)
            chunks = self._ahead.pop(doc_id, None)
            if chunks is not None:
                self.bytes_ahead -= self.weights[doc_id]
                self.chunks_ahead -= chunks

    def parsed(self, doc_id: int, embedded: int = 0, chunks: int = 0) -> None:
        """``doc_id`` is parsed into ``chunks`` chunks, ``embedded`` of them embedded."""
        if doc_id not in self._seen:
            self._first_sight(doc_id)
            self.chunks_known += chunks
        before = self._docs.get(doc_id, (0, chunks))[0]
        self.chunks_embedded += max(0, embedded - before)
        self._docs[doc_id] = (embedded, chunks)

    def settled(self, doc_id: int) -> None:
        """``doc_id`` is done (indexed, skipped, failed, or sent back to be read again)."""
        if doc_id not in self._seen:
            self._first_sight(doc_id)
        embedded, chunks = self._docs.pop(doc_id, (0, 0))
        self.chunks_known -= chunks - embedded  # chunks that will never be embedded now
        self._settled += self.weights.get(doc_id, 0)

    def measure(self, now: float | None = None) -> tuple[float, float | None]:
        """Bytes done per second lately, and the seconds left (None: nothing measured yet)."""
        now = time.monotonic() if now is None else now
        current = (now, float(self.bytes_done), float(self.bytes_parsed), float(self.chunks_embedded))
        if now - self._samples[-1][0] >= _SAMPLE_EVERY_S:
            self._samples.append(current)
        while len(self._samples) > 2 and now - self._samples[1][0] >= RATE_WINDOW_S:
            self._samples.popleft()
        base = self._samples[0]
        if now - base[0] < _MIN_WINDOW_S:
            base = (self.started, 0.0, 0.0, 0.0)
        span = now - base[0]
        if span <= 0:
            return 0.0, None
        done_rate, parse_rate, embed_rate = ((c - b) / span for c, b in zip(current[1:], base[1:], strict=True))
        # A stage that waits for the other (parsing held back while a huge document embeds)
        # measures nothing lately: its average over the pass stands in.
        elapsed = now - self.started
        parse_rate = parse_rate or self.bytes_parsed / elapsed
        embed_rate = embed_rate or self.chunks_embedded / elapsed
        return done_rate, self._eta(parse_rate, embed_rate)

    def _chunks_left(self) -> float:
        with self._lock:
            bytes_ahead, chunks_ahead = self.bytes_ahead, self.chunks_ahead
        guessed_bytes = max(0, self.bytes_total - self.bytes_parsed - bytes_ahead)
        known_bytes = self.bytes_parsed + bytes_ahead
        per_byte = (self.chunks_known + chunks_ahead) / known_bytes if known_bytes else 0.0
        return self.chunks_known - self.chunks_embedded + chunks_ahead + guessed_bytes * per_byte

    def _eta(self, parse_rate: float, embed_rate: float) -> float | None:
        bytes_left = self.bytes_total - self.bytes_parsed
        chunks_left = self._chunks_left()
        waits = []
        for left, rate in ((bytes_left, parse_rate), (chunks_left, embed_rate)):
            if left > 0:
                if rate <= 0:
                    return None
                waits.append(left / rate)
        return max(waits, default=0.0)
