"""Plain text and source code; Markdown and reStructuredText are indexed as the text they are."""

from __future__ import annotations

import re

from .encoding import decode_text
from .registry import ParseInput, register

_MARKDOWN_TITLE = re.compile(r"^#\s+(.+?)\s*#*\s*$", re.MULTILINE)
_RST_UNDERLINE = re.compile(r"^([^\n]+)\n([=\-~^\"'`#*+])\2{2,}[ \t]*$", re.MULTILINE)


def decode_input(source: ParseInput) -> str:
    """Decode the input's bytes as text, noting lossy decoding in the warnings."""
    decoded = decode_text(source.data, truncated=source.truncated)
    if decoded.lossy:
        source.warnings.append(
            f"some bytes are not valid {decoded.encoding} and were replaced with \ufffd"
        )
    elif decoded.encoding not in ("utf-8", "ascii"):
        source.warnings.append(f"decoded as {decoded.encoding}")
    return decoded.text


@register("text")
def parse_text(source: ParseInput) -> None:
    """Plain text or source code, as one page-less page."""
    source.collector.add(decode_input(source))


@register("markdown")
def parse_markdown(source: ParseInput) -> None:
    """Markdown as written: its ``#`` headings already sit on their own lines."""
    text = decode_input(source)
    found = _MARKDOWN_TITLE.search(text[:100_000])
    source.title = found.group(1) if found else None
    source.collector.add(text)


@register("rst")
def parse_rst(source: ParseInput) -> None:
    """reStructuredText with underlined section titles turned into ``#`` headings."""
    text = decode_input(source)
    levels: list[str] = []

    def heading(match: re.Match[str]) -> str:
        title, mark = match.group(1).strip(), match.group(2)
        # Heading levels in reST follow the order in which underline characters first appear.
        if mark not in levels:
            levels.append(mark)
        if source.title is None:
            source.title = title
        return "#" * min(levels.index(mark) + 1, 6) + " " + title

    source.collector.add(_RST_UNDERLINE.sub(heading, text))
