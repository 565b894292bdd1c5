"""How ``bastion library add|sync|watch`` show a sync: a bar on a terminal, lines in a log,
JSON lines for scripts.

The bar is plain text redrawn with ``\\r`` (no new dependency: ``tqdm`` and ``rich`` only come
with other packages here, and one line does not need them); it is drawn only when stderr is a
terminal. ``--json`` prints one object per progress event on stdout, at most every
``JSON_EVERY_S`` while nothing but the clock moves; keys are stable (add, never rename).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from typing import Any, TextIO

from bastion.store.library_types import SyncProgress

BAR_WIDTH = 24
# A terminal redraws this often at most; a log gets a line this often at most.
TTY_EVERY_S = 0.2
LOG_EVERY_S = 5.0
JSON_EVERY_S = 0.5


def size_text(size: float) -> str:
    """``size`` bytes as "12.3 MiB"."""
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size:.0f} B"


def duration_text(seconds: float | None) -> str:
    """ "42 s", "3 min 05 s", "1 h 02 min"; "?" when not known yet."""
    if seconds is None:
        return "?"
    whole = max(0, round(seconds))
    if whole < 60:
        return f"{whole} s"
    if whole < 3600:
        return f"{whole // 60} min {whole % 60:02d} s"
    return f"{whole // 3600} h {whole % 3600 // 60:02d} min"


def progress_line(event: SyncProgress) -> str:
    """One line for an indexing event: share done, files, chunks, speed, time left, current file."""
    parts = [
        f"{event.fraction:.0%}",
        f"{event.files_before + event.files_done:,}/{event.files_before + event.files_total:,} files",
        f"{size_text(event.bytes_per_s)}/s",
        f"ETA {duration_text(event.eta_s)}",
    ]
    if event.chunks_note:
        parts.insert(2, event.chunks_note)
    if event.current_label:
        parts.append(event.current_label)
    return f"{event.collection}: " + " · ".join(parts)


def bar(fraction: float, width: int = BAR_WIDTH) -> str:
    """ "[#########---------------]" for ``fraction`` done."""
    filled = round(max(0.0, min(1.0, fraction)) * width)
    return "[" + "#" * filled + "-" * (width - filled) + "]"


def done_line(event: SyncProgress) -> str:
    """The summary of a collection's sync."""
    counts = ", ".join(f"{n} {s}" for s, n in event.counts.items() if n)
    return (f"{event.collection}: {event.files_done} files, {event.chunks} chunks in "
            f"{event.elapsed_s:.1f} s ({event.chunks_per_s:.1f} chunks/s, "
            f"{size_text(event.bytes_per_s)}/s) — {counts or 'empty'}"
            + (" (stopped)" if event.cancelled else ""))


class ProgressPrinter:
    """A bar redrawn in place on a terminal; a plain line every few seconds otherwise."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.tty = out.isatty()
        self.last = 0.0
        self.drawn = False
        self.noted: set[str] = set()

    def show(self, event: SyncProgress) -> None:
        """Print ``event`` if enough time passed (always a collection's last event)."""
        if event.phase == "done":
            self._end_bar()
            print(done_line(event), file=self.out, flush=True)
            self.noted.discard(event.collection)
            return
        if event.phase != "index":
            return
        if event.before_note and event.collection not in self.noted:
            self.noted.add(event.collection)
            self._end_bar()
            print(f"{event.collection}: {event.before_note}", file=self.out, flush=True)
        now = time.monotonic()
        if now - self.last < (TTY_EVERY_S if self.tty else LOG_EVERY_S):
            return
        self.last = now
        line = progress_line(event)
        if self.tty:
            name, _, rest = line.partition(": ")
            text = f"{name}: {bar(event.fraction)} {rest}"[:150]
            print(f"\r{text.ljust(150)}", end="", file=self.out, flush=True)
            self.drawn = True
        else:
            print(line, file=self.out, flush=True)

    def _end_bar(self) -> None:
        if self.drawn:
            print(file=self.out)
            self.drawn = False


def progress_json(event: SyncProgress) -> dict[str, Any]:
    """A progress event as a JSON object: every ``SyncProgress`` field, plus ``type``
    ("scan", "progress" or "done"), ``fraction``, ``current_label`` and ``before_note``."""
    kind = {"scan": "scan", "index": "progress", "done": "done"}[event.phase]
    return {"type": kind, **asdict(event), "fraction": round(event.fraction, 4),
            "current_label": event.current_label, "before_note": event.before_note}


class JsonProgress:
    """JSON lines of progress on ``out``: every scan and done event, an indexing event when a
    file is finished or ``JSON_EVERY_S`` passed."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.last = 0.0
        self.files = -1

    def show(self, event: SyncProgress) -> None:
        """Print ``event`` as one line, unless it only says the clock moved."""
        now = time.monotonic()
        if event.phase == "index" and event.files_done == self.files and now - self.last < JSON_EVERY_S:
            return
        self.last, self.files = now, event.files_done if event.phase == "index" else -1
        self.out.write(json.dumps(progress_json(event), ensure_ascii=False) + "\n")
        self.out.flush()
