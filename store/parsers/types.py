"""What a parser returns: plain text with page spans. Only plain data crosses process boundaries."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

ParseStatus = Literal["ok", "skipped", "failed", "crashed"]


@dataclass(frozen=True)
class PageText:
    """Text of one page (PDF page, slide, sheet) or of a whole page-less document.

    ``page`` is 1-based where the format has pages or slides, otherwise None. Sheets and
    e-book chapters are numbered the same way. ``label`` names the location for people when the
    number alone would mislead ("sheet Sales", "chapter Introduction"); None for PDF pages.
    """

    text: str
    page: int | None = None
    label: str | None = None


@dataclass(frozen=True)
class ParsedDocument:
    pages: list[PageText]
    title: str | None = None
    # A short name of the format the parser recognised ("pdf", "docx", "text", ...).
    kind: str = "text"


@dataclass(frozen=True)
class ParseOutcome:
    """The result of parsing one file in a worker.

    ``ok``: ``document`` holds the text. ``skipped``: not indexable by design (encrypted, no text
    layer, binary, too large, unsupported type). ``failed``: the file is broken, the parser said
    why, or it ran out of time or memory. ``crashed``: the worker process died on this file.
    ``reason`` is always a sentence a person can read (empty only for ``ok``).
    """

    status: ParseStatus
    reason: str = ""
    document: ParsedDocument | None = None
    warnings: list[str] = field(default_factory=list)
    # Wall-clock seconds spent on the file in the worker (set by ParsePool; None in-process).
    parse_seconds: float | None = None
