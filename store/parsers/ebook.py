"""EPUB via ebooklib: the chapters of the reading order (spine), one page each."""

from __future__ import annotations

import io
import re
from typing import Any

from .html_text import html_to_text
from .office import guard_zip
from .registry import ParseInput, register
from .verdicts import FileBroken

_HEADING_LINE = re.compile(r"^#{1,6} (.+)$", re.MULTILINE)


@register("epub")
def parse_epub(source: ParseInput) -> None:
    """Chapters in reading order; ``page`` is the chapter's position, ``label`` its heading."""
    # EPUB 2 XHTML carries plain DOCTYPEs; entity declarations are still refused.
    guard_zip(source, allow_plain_doctype=True)
    from ebooklib import ITEM_DOCUMENT, epub

    try:
        book = epub.read_epub(io.BytesIO(source.data), {"ignore_ncx": True})
    except Exception as error:  # ebooklib raises many types for bad parts
        detail = str(error).strip() or type(error).__name__
        raise FileBroken(f"not a valid .epub ({detail[:120]})") from None
    titles = book.get_metadata("DC", "title")
    if titles and titles[0] and titles[0][0]:
        source.title = str(titles[0][0])
    number = 0
    for item in _spine_items(book):
        if item.get_type() != ITEM_DOCUMENT or isinstance(item, epub.EpubNav):
            continue
        text = html_to_text(item.get_content()).text
        if not text:
            continue
        number += 1
        heading = _HEADING_LINE.search(text)
        label = f"chapter {heading.group(1)}" if heading else f"chapter {number}"
        if not source.collector.add(text, page=number, label=label[:200]):
            break


def _spine_items(book: Any) -> list[Any]:
    items = []
    for entry in book.spine:
        idref = entry[0] if isinstance(entry, tuple) else entry
        item = book.get_item_with_id(idref)
        if item is not None:
            items.append(item)
    # A book without a usable spine still has its documents; read them in manifest order.
    return items or list(book.get_items())
