"""HTML and XML files, as visible text."""

from __future__ import annotations

import re

from .html_text import html_to_text
from .registry import ParseInput, register
from .verdicts import FileBroken


@register("html")
def parse_html(source: ParseInput) -> None:
    """HTML without scripts, styles and hidden elements; headings as ``#`` lines."""
    if source.truncated:
        # A cut page is still worth its text; BeautifulSoup closes the open tags.
        source.warnings.append("the page was cut to the character limit before parsing")
    converted = html_to_text(source.data)
    source.title = converted.title
    source.collector.add(converted.text)


# HTML markup left in an XML file's text: RSS and Atom feeds carry each item's HTML escaped
# (``&lt;p&gt;…``), so the text between the feed's own tags is HTML in its turn.
_ESCAPED_HTML = re.compile(
    r"<(?:p|div|span|a|img|br|hr|li|ul|ol|strong|em|b|i|h[1-6]|figure|figcaption|table|tr|td|"
    r"blockquote|pre|code|iframe|script|style)\b[^>]*>",
    re.IGNORECASE,
)


@register("xml")
def parse_xml(source: ParseInput) -> None:
    """XML (feeds, SVG, data) as the text between its tags; HTML escaped inside it (a feed's
    items) is read as HTML in its turn, so its tags and attributes do not become text.

    Read with the HTML parser on purpose: it never processes DTDs, so entity expansion and
    external entities cannot happen whatever the file declares.
    """
    converted = html_to_text(source.data)
    if not converted.text and source.data.strip():
        raise FileBroken("the XML file has no readable text")
    text = converted.text
    if _ESCAPED_HTML.search(text):
        text = html_to_text(text).text
    source.title = converted.title
    source.collector.add(text)
