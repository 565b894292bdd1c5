"""HTML to plain text in reading order, for HTML files, e-book chapters and HTML mail.

Drops what a reader never sees: script, style, noscript, template, and hidden elements
(``hidden``, ``aria-hidden="true"``, inline ``display:none``/``visibility:hidden``). Hidden text
is a classic way to plant instructions for a model in a page a person thinks is harmless.
Page chrome (nav, buttons, form controls, ``role="navigation"``) goes too: it is not content
and would crowd search results.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

# Never shown, or page chrome rather than content (menus, buttons, form controls).
_DROPPED = frozenset(
    {
        "script",
        "style",
        "noscript",
        "template",
        "head",
        "iframe",
        "object",
        "svg",
        "canvas",
        "nav",
        "button",
        "select",
        "textarea",
        "input",
    }
)
_BLOCKS = frozenset(
    [
        "address",
        "article",
        "aside",
        "blockquote",
        "body",
        "caption",
        "dd",
        "details",
        "dialog",
        "div",
        "dl",
        "dt",
        "fieldset",
        "figcaption",
        "figure",
        "footer",
        "form",
        "header",
        "hgroup",
        "hr",
        "html",
        "li",
        "main",
        "nav",
        "ol",
        "p",
        "pre",
        "section",
        "summary",
        "table",
        "tbody",
        "thead",
        "tfoot",
        "tr",
        "ul",
        "center",
    ]
)
_HEADINGS = {f"h{level}": level for level in range(1, 7)}
_CELLS = frozenset({"td", "th"})
_HIDDEN_STYLE = re.compile(r"display\s*:\s*none|visibility\s*:\s*hidden", re.IGNORECASE)
_SPACES = re.compile(r"[ \t\r\n\f\v\u00a0]+")
# Markers in the stream of pieces; resolved into newlines once the walk is done.
_BREAK = "\x00B"
_PARAGRAPH = "\x00P"
_BREAK_RUNS = re.compile("(?:\x00B ?){2,}")


@dataclass(frozen=True)
class HtmlText:
    """Text of an HTML document and its <title>, if any."""

    text: str
    title: str | None


def _is_hidden(attrs: dict[str, Any]) -> bool:
    if "hidden" in attrs:
        return True
    if str(attrs.get("role", "")).strip().lower() in ("navigation", "search"):
        return True
    if str(attrs.get("aria-hidden", "")).strip().lower() == "true":
        return True
    style = attrs.get("style")
    return bool(style) and bool(_HIDDEN_STYLE.search(str(style)))


def html_to_text(markup: bytes | str) -> HtmlText:
    """Convert HTML to text with headings on their own lines (``#`` style) and blank lines
    between paragraphs.

    Args:
        markup: The document; bytes let BeautifulSoup honour a BOM or ``<meta charset>``.

    Returns:
        The text and the document title.
    """
    from bs4 import BeautifulSoup, Comment, Declaration, Doctype, ProcessingInstruction, Tag
    from bs4.element import CData, NavigableString

    soup = BeautifulSoup(markup, "lxml")
    title_tag = soup.find("title")
    title = _SPACES.sub(" ", title_tag.get_text()).strip() if isinstance(title_tag, Tag) else None
    pieces: list[str] = []
    skipped_strings = (Comment, Declaration, Doctype, ProcessingInstruction, CData)
    # An explicit stack instead of recursion: hostile pages nest thousands of levels deep.
    stack: list[Any] = [soup]
    while stack:
        node = stack.pop()
        if isinstance(node, str) and not isinstance(node, NavigableString):
            pieces.append(node)
            continue
        if isinstance(node, NavigableString):
            if isinstance(node, skipped_strings):
                continue
            pieces.append(str(node))
            continue
        if not isinstance(node, Tag):
            continue
        name = (node.name or "").lower()
        if name in _DROPPED or _is_hidden(node.attrs):
            continue
        if name == "br":
            pieces.append(_BREAK)
            continue
        before, after = _framing(name)
        if name == "pre":
            pieces.append(before + _preserve(node.get_text()) + after)
            continue
        stack.append(after)
        stack.extend(reversed(list(node.children)))
        stack.append(before)
    return HtmlText(text=_finish("".join(pieces)), title=title or None)


def _framing(name: str) -> tuple[str, str]:
    level = _HEADINGS.get(name)
    if level is not None:
        return _PARAGRAPH + "#" * level + " ", _PARAGRAPH
    if name == "li":
        return _BREAK + "- ", _BREAK
    if name == "tr":
        return _BREAK, _BREAK
    if name in _CELLS:
        return " | ", ""
    if name in _BLOCKS:
        return _PARAGRAPH, _PARAGRAPH
    return "", ""


def _preserve(text: str) -> str:
    # Keep the layout of <pre>; marker characters protect its newlines from space folding.
    return text.replace("\r\n", "\n").replace("\n", _BREAK).replace(" ", "\u2007")


def _finish(joined: str) -> str:
    text = _SPACES.sub(" ", joined)
    # Adjacent line-level elements (list items, table rows) each end and start a line: one break.
    text = _BREAK_RUNS.sub(_BREAK, text)
    text = text.replace(_PARAGRAPH, "\n\n").replace(_BREAK, "\n")
    lines = [line.strip(" ") for line in text.split("\n")]
    # Cells leave "| a | b" at the start of a row; drop the leading separator.
    lines = [line[2:] if line.startswith("| ") else line for line in lines]
    text = "\n".join(lines).replace("\u2007", " ")
    return re.sub(r"\n{3,}", "\n\n", text).strip()
