"""What a parser returns: plain text with page spans. Only plain data crosses process boundaries."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

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


# ---- the wire format between a parse worker and the pool --------------------------------------
#
# A worker parses hostile files, so the pool treats what it sends as hostile too: JSON (data,
# never code, unlike pickle) checked field by field before it becomes a ParseOutcome.

_STATUSES = ("ok", "skipped", "failed", "crashed")


def outcome_to_wire(outcome: ParseOutcome) -> dict[str, Any]:
    """``outcome`` as JSON-ready plain data."""
    return asdict(outcome)


def outcome_from_wire(data: object) -> ParseOutcome:
    """A ParseOutcome from wire data; ValueError if anything is missing or of the wrong type."""
    fields = _object(data, "outcome")
    status = fields.get("status")
    if status not in _STATUSES:
        raise ValueError(f"unknown status {status!r}")
    document = fields.get("document")
    seconds = fields.get("parse_seconds")
    if seconds is not None and (isinstance(seconds, bool) or not isinstance(seconds, int | float)):
        raise ValueError("parse_seconds is not a number")
    return ParseOutcome(
        status=status,
        reason=_text(fields.get("reason"), "reason"),
        document=None if document is None else _document(document),
        warnings=[_text(w, "warning") for w in _list(fields.get("warnings"), "warnings")],
        parse_seconds=None if seconds is None else float(seconds),
    )


def _document(data: object) -> ParsedDocument:
    fields = _object(data, "document")
    title = fields.get("title")
    return ParsedDocument(
        pages=[_page(p) for p in _list(fields.get("pages"), "pages")],
        title=None if title is None else _text(title, "title"),
        kind=_text(fields.get("kind"), "kind"),
    )


def _page(data: object) -> PageText:
    fields = _object(data, "page")
    page, label = fields.get("page"), fields.get("label")
    if page is not None and (isinstance(page, bool) or not isinstance(page, int)):
        raise ValueError("page is not an integer")
    return PageText(
        text=_text(fields.get("text"), "text"),
        page=page,
        label=None if label is None else _text(label, "label"),
    )


def _object(data: object, what: str) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise ValueError(f"{what} is not an object")
    return data


def _list(data: object, what: str) -> list[Any]:
    if not isinstance(data, list):
        raise ValueError(f"{what} is not a list")
    return data


def _text(data: object, what: str) -> str:
    if not isinstance(data, str):
        raise ValueError(f"{what} is not text")
    return data
