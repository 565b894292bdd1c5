"""Per-document limits and the collector that enforces the character budget while parsing."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from .types import PageText

DEFAULT_MAX_BYTES = 200 * 1024 * 1024
DEFAULT_MAX_CHARS = 20_000_000


@dataclass(frozen=True)
class ParseLimits:
    """Caps that keep one hostile or huge file from costing unbounded memory or time.

    Attributes:
        max_bytes: Files larger than this are skipped as too large.
        max_chars: At most this many characters of a document are kept (with a warning).
        zip_max_total_bytes: Cap on the declared uncompressed size of a zip-based document.
        zip_max_ratio: Overall uncompressed/compressed ratio above which a zip is a bomb.
        zip_max_members: Cap on the number of files inside a zip-based document.
        time_budget_s: After this many seconds a parser stops and keeps the pages it has
            (with a warning); None for no budget. The worker's hard timeout stays the backstop.
    """

    max_bytes: int = DEFAULT_MAX_BYTES
    max_chars: int = DEFAULT_MAX_CHARS
    zip_max_total_bytes: int = 200 * 1024 * 1024
    zip_max_ratio: float = 100.0
    zip_max_members: int = 10_000
    time_budget_s: float | None = None


@dataclass
class PageCollector:
    """Accumulates pages and stops accepting text once ``max_chars`` is reached.

    Parsers call ``add`` for each page (or block) and stop early when it returns False, so a
    spreadsheet with millions of cells never builds more text than will be kept.
    """

    max_chars: int
    deadline: float | None = None
    pages: list[PageText] = field(default_factory=list)
    total_chars: int = 0
    truncated: bool = False
    out_of_time: bool = False

    @property
    def full(self) -> bool:
        """True once the character budget is spent."""
        return self.total_chars >= self.max_chars

    def over_time(self) -> bool:
        """True (and remembered) once the time budget is spent."""
        if self.deadline is not None and not self.out_of_time and time.monotonic() > self.deadline:
            self.out_of_time = True
        return self.out_of_time

    def add(self, text: str, page: int | None = None, label: str | None = None) -> bool:
        """Add one page of text, cut to the remaining budget.

        Returns:
            False when the budget is spent and the parser should stop.
        """
        if self.full:
            self.truncated = self.truncated or bool(text)
            return False
        room = self.max_chars - self.total_chars
        if len(text) > room:
            text = text[:room]
            self.truncated = True
        self.pages.append(PageText(text=text, page=page, label=label))
        self.total_chars += len(text)
        return not self.full and not self.over_time()
