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
    styles = _StyleNames(document)
    blocks: list[str] = []
    size = 0
    for item in document.iter_inner_content():
        block = (
            _xml_table_text(item._tbl) if isinstance(item, Table) else _paragraph_text(item, styles)
        )
        if not block:
            continue
        blocks.append(block)
        size += len(block) + 2
        if size >= source.collector.max_chars or (
            len(blocks) % 256 == 0 and source.collector.over_time()
        ):
            break
    source.collector.add("\n\n".join(blocks))


class _StyleNames:
    """Paragraph style id -> name, looked up once per id.

    python-docx resolves ``paragraph.style`` with a search of the styles part every time,
    which made an 870-page handbook take half a minute.
    """

    def __init__(self, document: Any) -> None:
        self._document = document
        self._names: dict[str | None, str] = {}

    def name(self, paragraph: Any) -> str:
        style_id = paragraph._p.style
        if style_id not in self._names:
            try:
                style = paragraph.style
                self._names[style_id] = str(style.name) if style is not None else ""
            except (KeyError, AttributeError, ValueError):
                self._names[style_id] = ""
        return self._names[style_id]


def _paragraph_text(paragraph: Any, styles: _StyleNames) -> str:
    text = str(paragraph.text).strip()
    if not text:
        return ""
    style = styles.name(paragraph)
    if style == "Title":
        return "# " + text
    found = _HEADING_STYLE.match(style)
    if found:
        return "#" * min(int(found.group(1)), 6) + " " + text
    return text


def _xml_table_text(table: Any) -> str:
    """Rows of a Word table as ``a | b``, read from the XML.

    python-docx's cell grid raises on irregular tables (rows with fewer cells than the grid);
    the XML rows and cells are always there. Nested tables are flattened into their cell.
    """
    from docx.oxml.ns import qn

    rows: list[str] = []
    for row in table.iterchildren(qn("w:tr")):
        cells = []
        for cell in row.iterchildren(qn("w:tc")):
            paragraphs = [
                "".join(t.text or "" for t in p.iter(qn("w:t"))) for p in cell.iter(qn("w:p"))
            ]
            cells.append(" ".join(" ".join(paragraphs).split()))
        while cells and not cells[-1]:
            cells.pop()
        if any(cells):
            rows.append(" | ".join(cells))
    return "\n".join(rows)


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
    if getattr(shape, "has_chart", False) and shape.has_chart:
        yield from _chart_texts(shape.chart)
    description = _alt_text(shape)
    if description:
        yield f"Image: {description}"
    if getattr(shape, "has_text_frame", False) and shape.has_text_frame:
        paragraphs = [str(p.text) for p in shape.text_frame.paragraphs]
        text = "\n".join(p.strip() for p in paragraphs if p.strip())
        if text:
            yield text


def _alt_text(shape: Any) -> str:
    # The "descr" of a picture is often the only text about it (and what a screen reader says).
    properties = shape._element.find(
        ".//{http://schemas.openxmlformats.org/presentationml/2006/main}cNvPr"
    )
    if properties is None:
        return ""
    return " ".join(str(properties.get("descr") or "").split())


def _chart_texts(chart: Any) -> Iterator[str]:
    lines: list[str] = []
    try:
        if chart.has_title and chart.chart_title.has_text_frame:
            title = " ".join(chart.chart_title.text_frame.text.split())
            if title:
                lines.append(f"Chart: {title}")
        for plot in chart.plots:
            categories = [str(category) for category in plot.categories]
            for series in plot.series:
                values = list(series.values)
                pairs = [
                    f"{categories[i] if i < len(categories) else i + 1}: {value:g}"
                    if isinstance(value, (int, float))
                    else f"{categories[i] if i < len(categories) else i + 1}: {value}"
                    for i, value in enumerate(values)
                    if value is not None
                ]
                lines.append(f"{series.name}: " + "; ".join(pairs))
    except (KeyError, AttributeError, ValueError, TypeError, IndexError):
        pass  # a chart with a broken data part loses its data, not the slide
    if lines:
        yield "\n".join(lines)
