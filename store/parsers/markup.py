"""HTML and XML files, as visible text."""

from __future__ import annotations

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


@register("xml")
def parse_xml(source: ParseInput) -> None:
    """XML (feeds, SVG, data) as the text between its tags.

    Read with the HTML parser on purpose: it never processes DTDs, so entity expansion and
    external entities cannot happen whatever the file declares.
    """
    converted = html_to_text(source.data)
    if not converted.text and source.data.strip():
        raise FileBroken("the XML file has no readable text")
    source.title = converted.title
    source.collector.add(converted.text)
