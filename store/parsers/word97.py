"""Word 97–2003 documents (.doc, .dot) via olefile: the text of the body, footnotes, comments,
endnotes and text boxes.

A ``.doc`` is an OLE compound file. Its text is found as [MS-DOC] describes (§2.4.1): the File
Information Block at the start of the ``WordDocument`` stream says which table stream holds the
piece table (``0Table`` or ``1Table``), where it is (``fcClx``) and how many characters each part
of the document has (``ccpText``, ``ccpFtn``…). Each piece of the table maps a run of character
positions to bytes of ``WordDocument``: cp1252 bytes if "compressed", else UTF-16. Word's control
characters are then turned into text: paragraph and line marks into line breaks, table cell
marks into tabs and rows into lines, and of a field (``HYPERLINK "…"`` + separator + result) only
the result is kept. Headers and footers are left out: they repeat on every page.

No maintained Python library reads .doc (antiword and LibreOffice are programs, not packages);
olefile, already used for Outlook messages, reads the container. Every offset read from the file
is checked against the stream it points into, so a damaged or hostile file fails with a reason.
Word 6/95 files (another layout) and encrypted documents are skipped with a reason that says what
to do.
"""

from __future__ import annotations

import re
import struct

from .compound import broken, open_compound
from .registry import ParseInput, register
from .verdicts import FileBroken, FileSkipped

_WORD97_IDENT = 0xA5EC
_WORD95_IDENTS = frozenset({0xA5DC, 0xA699, 0xA697})  # Word 6, Word 95 and their templates
_ENCRYPTED = 0x0100
_TABLE_1 = 0x0200
# FibRgLw97 (32-bit counts): the character counts of the parts, in the order the text stores them.
_CCP_TEXT, _CCP_FTN, _CCP_HDD, _CCP_MCR, _CCP_ATN, _CCP_EDN, _CCP_TXBX = range(3, 10)
# Index of fcClx in FibRgFcLcb97 (pairs of 32-bit fc, lcb).
_CLX_PAIR = 33
_COMPRESSED = 0x40000000
_MAX_PIECES = 1_000_000
_FIELD_BEGIN, _FIELD_SEPARATOR, _FIELD_END = "\x13", "\x14", "\x15"
# Control characters and what they become; anything else below 0x20 is dropped.
_CONTROLS = str.maketrans(
    {"\r": "\n", "\x0b": "\n", "\x0c": "\n\n", "\x0e": "\n", "\x1e": "-", "\x1f": "", "\t": "\t"}
)
_DROP = re.compile(r"[\x00-\x08\x0e-\x1f]")

_WHAT = "Word document"


@register("doc")
def parse_doc(source: ParseInput) -> None:
    """The body, then footnotes, comments, endnotes and text boxes, each part after a blank line."""
    with open_compound(source.data, _WHAT) as ole:
        if ole.exists("EncryptedPackage"):  # an encrypted .docx saved under a .doc name
            raise FileSkipped("password-protected Word document; remove the password to index it")
        if not ole.exists("WordDocument"):
            raise FileBroken("not a valid Word document (no WordDocument stream)")
        try:
            word = ole.openstream("WordDocument").read()
            ident, flags = struct.unpack_from("<H8xH", word, 0)
            if ident in _WORD95_IDENTS:
                raise FileSkipped("Word 6/95 document; save it in a current format to index it")
            if ident != _WORD97_IDENT:
                raise FileBroken(f"not a valid Word document (unknown identifier {ident:#06x})")
            if flags & _ENCRYPTED:
                raise FileSkipped(
                    "password-protected Word document; remove the password to index it"
                )
            table_name = "1Table" if flags & _TABLE_1 else "0Table"
            if not ole.exists(table_name):
                raise FileBroken(f"not a valid Word document (no {table_name} stream)")
            table = ole.openstream(table_name).read()
            counts, clx = _fib(word)
            characters = _characters(word, table, clx)
            title = _title(ole)
        except (struct.error, IndexError, ValueError, OSError) as error:
            raise broken(_WHAT, error) from None
    parts: list[str] = []
    start = 0
    for index, count in enumerate(counts):
        piece = characters[start : start + count]
        start += count
        if index != _CCP_HDD - _CCP_TEXT:  # headers and footers repeat on every page
            parts.append(_plain(piece))
    source.title = title
    source.collector.add("\n\n".join(part for part in parts if part.strip()))


def _fib(word: bytes) -> tuple[list[int], tuple[int, int]]:
    """The parts' character counts and (fcClx, lcbClx) from the File Information Block."""
    (csw,) = struct.unpack_from("<H", word, 0x20)
    at = 0x22 + 2 * csw
    (cslw,) = struct.unpack_from("<H", word, at)
    longs = at + 2
    if cslw <= _CCP_TXBX:
        raise ValueError("File Information Block too short")
    counts = [
        struct.unpack_from("<i", word, longs + 4 * i)[0] for i in range(_CCP_TEXT, _CCP_TXBX + 1)
    ]
    counts[_CCP_MCR - _CCP_TEXT] = 0  # reserved since Word 97
    if any(c < 0 for c in counts):
        raise ValueError("negative character count")
    at = longs + 4 * cslw
    (pairs,) = struct.unpack_from("<H", word, at)
    if pairs <= _CLX_PAIR:
        raise ValueError("File Information Block too short")
    clx = struct.unpack_from("<II", word, at + 2 + 8 * _CLX_PAIR)
    return counts, (clx[0], clx[1])


def _characters(word: bytes, table: bytes, clx: tuple[int, int]) -> str:
    """The document's characters in order, from the piece table (Clx) in the table stream."""
    offset, size = clx
    if size == 0 or offset + size > len(table):
        raise ValueError("piece table outside the table stream")
    data = table[offset : offset + size]
    at = 0
    while data[at] == 0x01:  # Prc: formatting of pieces, not needed for text
        (skip,) = struct.unpack_from("<h", data, at + 1)
        at += 3 + max(skip, 0)
    if data[at] != 0x02:
        raise ValueError("no piece table")
    (length,) = struct.unpack_from("<I", data, at + 1)
    plc = data[at + 5 : at + 5 + length]
    if len(plc) != length or length < 16 or (length - 4) % 12:
        raise ValueError("piece table of a wrong size")
    pieces = (length - 4) // 12
    if pieces > _MAX_PIECES:
        raise ValueError("too many pieces")
    positions = struct.unpack_from(f"<{pieces + 1}i", plc, 0)
    out: list[str] = []
    for k in range(pieces):
        count = positions[k + 1] - positions[k]
        if count < 0:
            raise ValueError("piece table out of order")
        (fc,) = struct.unpack_from("<I", plc, 4 * (pieces + 1) + 8 * k + 2)
        if fc & _COMPRESSED:
            first = (fc & ~_COMPRESSED) // 2
            raw, encoding = word[first : first + count], "cp1252"
        else:
            raw, encoding = word[fc : fc + 2 * count], "utf-16-le"
        if len(raw) != count * (1 if encoding == "cp1252" else 2):
            raise ValueError("a piece points outside the WordDocument stream")
        out.append(raw.decode(encoding, "replace"))
    return "".join(out)


def _plain(characters: str) -> str:
    """Word's control characters as text: fields by their results, cells as tabs, rows as lines."""
    kept: list[str] = []
    fields: list[bool] = []  # per open field: past its separator (showing its result)?
    for char in characters:
        if char == _FIELD_BEGIN:
            fields.append(False)
        elif char == _FIELD_SEPARATOR:
            if fields:
                fields[-1] = True
        elif char == _FIELD_END:
            if fields:
                fields.pop()
        elif all(fields):
            kept.append(char)
    text = "".join(kept).replace("\x07\x07", "\n").replace("\x07", "\t")
    text = _DROP.sub("", text.translate(_CONTROLS))
    return "\n".join(line.rstrip() for line in text.split("\n")).strip()


def _title(ole: object) -> str | None:
    """The title in the document's summary information, if it has one."""
    try:
        raw = ole.get_metadata().title  # type: ignore[attr-defined]
    except Exception:  # a damaged property set is no reason to lose the text
        return None
    if isinstance(raw, bytes):
        raw = raw.decode("cp1252", "replace")
    title = str(raw or "").replace("\x00", "").strip()
    return title or None
