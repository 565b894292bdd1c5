"""OpenDocument via odfpy: text documents (ODT), spreadsheets (ODS, a page per sheet) and
presentations (ODP, a page per slide)."""

from __future__ import annotations

import io
from typing import Any

from .office import guard_zip
from .registry import ParseInput, register
from .verdicts import FileBroken

_TEXT_NS = "urn:oasis:names:tc:opendocument:xmlns:text:1.0"
_TABLE_NS = "urn:oasis:names:tc:opendocument:xmlns:table:1.0"
_DRAW_NS = "urn:oasis:names:tc:opendocument:xmlns:drawing:1.0"
_OFFICE_NS = "urn:oasis:names:tc:opendocument:xmlns:office:1.0"
# Inline elements that stand for whitespace.
_SPACE = (_TEXT_NS, "s")
_TAB = (_TEXT_NS, "tab")
_LINE_BREAK = (_TEXT_NS, "line-break")
_HEADING = (_TEXT_NS, "h")
_PARAGRAPH = (_TEXT_NS, "p")
_TABLE = (_TABLE_NS, "table")
_ROW = (_TABLE_NS, "table-row")
_CELL = (_TABLE_NS, "table-cell")
_SLIDE = (_DRAW_NS, "page")
# Not reading content: annotations are kept, but change-tracking and notes bodies are skipped.
_SKIPPED = frozenset(
    {(_TEXT_NS, "tracked-changes"), (_TEXT_NS, "note-citation"), (_OFFICE_NS, "forms")}
)


def _inline_text(element: Any) -> str:
    parts: list[str] = []
    stack: list[Any] = [element]
    while stack:
        node = stack.pop()
        if node.nodeType == node.TEXT_NODE:
            parts.append(str(node.data))
            continue
        qname = getattr(node, "qname", None)
        if qname == _SPACE:
            count = node.attributes.get((_TEXT_NS, "c"), "1")
            parts.append(" " * min(int(count) if str(count).isdigit() else 1, 100))
        elif qname == _TAB:
            parts.append("\t")
        elif qname == _LINE_BREAK:
            parts.append("\n")
        elif qname not in _SKIPPED:
            stack.extend(reversed(node.childNodes))
    return "".join(parts).strip()


def _blocks(root: Any, budget: int) -> list[str]:
    """Headings, paragraphs and table rows under ``root`` in document order."""
    blocks: list[str] = []
    size = 0
    stack: list[Any] = [root]
    while stack and size < budget:
        node = stack.pop()
        qname = getattr(node, "qname", None)
        if qname == _HEADING:
            text = _inline_text(node)
            level = str(node.attributes.get((_TEXT_NS, "outline-level"), "1"))
            if text:
                blocks.append("#" * min(int(level) if level.isdigit() else 1, 6) + " " + text)
        elif qname == _PARAGRAPH:
            text = _inline_text(node)
            if text:
                blocks.append(text)
        elif qname == _ROW:
            cells = [
                _cell_text(cell)
                for cell in node.childNodes
                if getattr(cell, "qname", None) == _CELL
            ]
            while cells and not cells[-1]:
                cells.pop()
            if cells:
                blocks.append(" | ".join(cells))
        elif qname not in _SKIPPED and getattr(node, "childNodes", None):
            stack.extend(reversed(node.childNodes))
        else:
            continue
        size += len(blocks[-1]) if blocks else 0
    return blocks


def _cell_text(cell: Any) -> str:
    return " ".join(" ".join(block.split()) for block in _blocks(cell, 1_000_000))


def _join(blocks: list[str]) -> str:
    # Consecutive table rows stay on adjacent lines; everything else is its own paragraph.
    return "\n\n".join(blocks)


def _load(source: ParseInput) -> Any:
    guard_zip(source)
    from odf.opendocument import load

    try:
        return load(io.BytesIO(source.data))
    except Exception as error:  # odfpy raises many types for bad parts
        detail = str(error).strip() or type(error).__name__
        raise FileBroken(f"not a valid .{source.extension or 'odt'} ({detail[:120]})") from None


def _body_part(document: Any, name: str) -> Any:
    """The ``office:text``/``office:spreadsheet``/``office:presentation`` element.

    Found by walking the body: odfpy's ``document.text`` shortcut is not reliable for loaded
    files (it can point at a whitespace node when the XML is pretty-printed).
    """
    for node in document.body.childNodes:
        if getattr(node, "qname", None) == (_OFFICE_NS, name):
            return node
    return document.body


def _title(document: Any) -> str | None:
    from odf import dc
    from odf.element import Element

    for element in document.meta.getElementsByType(dc.Title):
        if isinstance(element, Element):
            text = _inline_text(element)
            if text:
                return text
    return None


@register("odt")
def parse_odt(source: ParseInput) -> None:
    """Text documents: headings as ``#`` lines, paragraphs and table rows in order."""
    document = _load(source)
    source.title = _title(document)
    source.collector.add(_join(_blocks(_body_part(document, "text"), source.collector.max_chars)))


@register("ods")
def parse_ods(source: ParseInput) -> None:
    """Spreadsheets: one page per sheet, rows as ``a | b``."""
    document = _load(source)
    source.title = _title(document)
    sheets = [
        node
        for node in _body_part(document, "spreadsheet").childNodes
        if getattr(node, "qname", None) == _TABLE
    ]
    for number, sheet in enumerate(sheets, start=1):
        name = str(sheet.attributes.get((_TABLE_NS, "name"), f"Sheet{number}"))
        rows = _blocks(sheet, source.collector.max_chars - source.collector.total_chars)
        if rows and not source.collector.add(
            f"## {name}\n\n" + "\n".join(rows), page=number, label=f"sheet {name}"
        ):
            break


@register("odp")
def parse_odp(source: ParseInput) -> None:
    """Presentations: one page per slide."""
    document = _load(source)
    source.title = _title(document)
    slides = [
        node
        for node in _body_part(document, "presentation").childNodes
        if getattr(node, "qname", None) == _SLIDE
    ]
    for number, slide in enumerate(slides, start=1):
        text = _join(_blocks(slide, source.collector.max_chars))
        if text and not source.collector.add(text, page=number, label=f"slide {number}"):
            break
