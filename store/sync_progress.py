"""How far a sync is, in bytes, and what it is doing right now.

A file's work is its size in bytes: half of it is done when its parse comes back, the other
half as its chunks are embedded, all of it once it is settled. The rate is measured over the
last ``RATE_WINDOW_S`` seconds, so the estimate follows a change of pace (a folder of big PDFs
after one of notes) instead of the whole run's average; bytes, not files, because one file of
3,633 may be a 400-page report.

``ActivityBoard`` is shared by the parse thread and the owner thread: each says which file it
is reading, parsing or embedding and since when, so a progress event can say "parsing
report.pdf · 14 s" while that one file takes its time.
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
    """Bytes done out of bytes to do for one pass over a work list, and the recent rate.

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
        self._settled = 0
        self._partial: dict[int, float] = {}
        self._samples: deque[tuple[float, float]] = deque([(self.started, 0.0)])

    @property
    def bytes_done(self) -> int:
        """Bytes of settled files plus the done share of files under way."""
        return min(self.bytes_total, self._settled + round(sum(self._partial.values())))

    def parsed(self, doc_id: int, embedded: int = 0, chunks: int = 0) -> None:
        """``doc_id`` is parsed and ``embedded`` of its ``chunks`` are embedded."""
        weight = self.weights.get(doc_id, 0)
        share = PARSE_SHARE + (1 - PARSE_SHARE) * (embedded / chunks if chunks else 0.0)
        self._partial[doc_id] = weight * share

    def settled(self, doc_id: int) -> None:
        """``doc_id`` is done (indexed, skipped, failed, or sent back to be read again)."""
        self._partial.pop(doc_id, None)
        self._settled += self.weights.get(doc_id, 0)

    def rate(self, now: float | None = None) -> float:
        """Bytes per second over the last ``RATE_WINDOW_S`` (the run's average early on)."""
        now = time.monotonic() if now is None else now
        done = float(self.bytes_done)
        if now - self._samples[-1][0] >= _SAMPLE_EVERY_S:
            self._samples.append((now, done))
        while len(self._samples) > 2 and now - self._samples[1][0] >= RATE_WINDOW_S:
            self._samples.popleft()
        since, then = self._samples[0]
        if now - since < _MIN_WINDOW_S:
            since, then = self.started, 0.0
        span = now - since
        return (done - then) / span if span > 0 else 0.0

    def eta(self, rate: float) -> float | None:
        """Seconds left at ``rate`` bytes per second (None: no rate measured yet)."""
        left = self.bytes_total - self.bytes_done
        if left <= 0:
            return 0.0
        return left / rate if rate > 0 else None
