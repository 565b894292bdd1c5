"""Rich Text Format (.rtf) via striprtf: the text, with its paragraphs and table cells.

RTF is 7-bit text whose non-ASCII characters are escapes (``\\'e9`` in the document's code page,
``\\u233?`` for Unicode), so the bytes are read one to one (latin-1) and striprtf decodes the
escapes, in cp1252 unless the document says otherwise. Pictures and embedded objects are left out.
"""

from __future__ import annotations

import codecs
import re

from .registry import ParseInput, register
from .verdicts import FileBroken

# ``\ansicpgN``: the code page of the document's ``\'xx`` escapes.
_CODE_PAGE = re.compile(rb"\\ansicpg(\d{3,5})")


@register("rtf")
def parse_rtf(source: ParseInput) -> None:
    """The document's text; a file that does not start as RTF fails with that reason."""
    from striprtf.striprtf import rtf_to_text

    if source.data.lstrip()[:5] != b"{\\rtf":
        raise FileBroken("not a valid RTF document (it does not start with {\\rtf)")
    page = _CODE_PAGE.search(source.data[:4096])
    encoding = f"cp{page.group(1).decode()}" if page else "cp1252"
    try:
        codecs.lookup(encoding)
    except LookupError:
        source.warnings.append(f"unknown code page {encoding}; read as cp1252")
        encoding = "cp1252"
    text: str = rtf_to_text(  # type: ignore[no-untyped-call]
        source.data.decode("latin-1"), encoding=encoding, errors="replace"
    )
    source.collector.add(text.strip())
