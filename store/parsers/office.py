"""Word documents (python-docx) and PowerPoint decks (python-pptx; one page per slide)."""

from __future__ import annotations

import io
import re
from collections.abc import Iterable, Iterator
from typing import Any

from .limits import ParseLimits
from .registry import ParseInput, register
from .verdicts import FileBroken
from .zipguard import check_zip

_HEADING_STYLE = re.compile(r"^(?:heading|überschrift|titre|título|titolo)\s*(\d)$", re.IGNORECASE)


def _open_failed(extension: str, error: Exception) -> FileBroken:
    detail = str(error).strip() or type(error).__name__
    return FileBroken(f"not a valid .{extension} (the library could not read it: {detail[:120]})")


def guard_zip(source: ParseInput, *, allow_plain_doctype: bool = False) -> None:
    """Run the zip checks for ``source`` (shared by every zip-based parser)."""
    limits: ParseLimits = source.limits
    check_zip(
        source.data, source.extension or "zip", limits, allow_plain_doctype=allow_plain_doctype
    )


@register("docx")
def parse_docx(source: ParseInput) -> None:
    """Paragraphs and tables in body order; headings as ``#`` lines, table rows as ``a | b``."""
    guard_zip(source)
    import docx
    from docx.table import Table

    try:
        document = docx.Document(io.BytesIO(source.data))
    except Exception as error:  # python-docx raises many types for bad parts
        raise _open_failed(source.extension or "docx", error) from None
    title = document.core_properties.title
    source.title = title.strip() if title and title.strip() else None
    blocks: list[str] = []
    size = 0
    for item in document.iter_inner_content():
        block = _table_text(item) if isinstance(item, Table) else _paragraph_text(item)
        if not block:
            continue
        blocks.append(block)
        size += len(block) + 2
        if size >= source.collector.max_chars:
            break
    source.collector.add("\n\n".join(blocks))


def _paragraph_text(paragraph: Any) -> str:
    text = str(paragraph.text).strip()
    if not text:
        return ""
    try:
        style = paragraph.style.name if paragraph.style is not None else ""
    except (KeyError, AttributeError, ValueError):
        style = ""
    if style == "Title":
        return "# " + text
    found = _HEADING_STYLE.match(style or "")
    if found:
        return "#" * min(int(found.group(1)), 6) + " " + text
    return text


def _table_text(table: Any) -> str:
    rows: list[str] = []
    for row in table.rows:
        cells: list[str] = []
        seen: set[int] = set()
        for cell in row.cells:
            # Merged cells come back once per grid column; show their text once.
            if id(cell._tc) in seen:
                continue
            seen.add(id(cell._tc))
            cells.append(" ".join(cell.text.split()))
        if any(cells):
            rows.append(" | ".join(cells))
    return "\n".join(rows)


@register("pptx")
def parse_pptx(source: ParseInput) -> None:
    """One page per slide (slide number = page): title first, then text boxes, tables, notes."""
    guard_zip(source)
    from pptx import Presentation

    try:
        deck = Presentation(io.BytesIO(source.data))
    except Exception as error:  # python-pptx raises many types for bad parts
        raise _open_failed(source.extension or "pptx", error) from None
    title = deck.core_properties.title
    source.title = title.strip() if title and title.strip() else None
    for number, slide in enumerate(deck.slides, start=1):
        parts: list[str] = []
        title_shape = slide.shapes.title
        if (
            title_shape is not None
            and title_shape.has_text_frame
            and title_shape.text_frame.text.strip()
        ):
            parts.append("# " + " ".join(title_shape.text_frame.text.split()))
        for shape in _reading_order(slide.shapes):
            if title_shape is not None and shape.shape_id == title_shape.shape_id:
                continue
            parts.extend(_shape_texts(shape))
        if slide.has_notes_slide:
            notes = slide.notes_slide.notes_text_frame
            if notes is not None and notes.text.strip():
                parts.append("Notes: " + notes.text.strip())
        text = "\n\n".join(part for part in parts if part)
        if text and not source.collector.add(text, page=number, label=f"slide {number}"):
            break


def _reading_order(shapes: Iterable[Any]) -> list[Any]:
    # Top-to-bottom, then left-to-right; shapes without a position keep their z-order.
    def key(item: tuple[int, Any]) -> tuple[int, int, int]:
        index, shape = item
        return (
            shape.top if shape.top is not None else 0,
            shape.left if shape.left is not None else 0,
            index,
        )

    return [shape for _, shape in sorted(enumerate(shapes), key=key)]


def _shape_texts(shape: Any) -> Iterator[str]:
    from pptx.enum.shapes import MSO_SHAPE_TYPE

    if shape.shape_type == MSO_SHAPE_TYPE.GROUP:
        for inner in _reading_order(shape.shapes):
            yield from _shape_texts(inner)
        return
    if getattr(shape, "has_table", False) and shape.has_table:
        yield _table_text(shape.table)
        return
    if getattr(shape, "has_text_frame", False) and shape.has_text_frame:
        paragraphs = [str(p.text) for p in shape.text_frame.paragraphs]
        text = "\n".join(p.strip() for p in paragraphs if p.strip())
        if text:
            yield text
