"""Checks on zip-based documents (DOCX, PPTX, XLSX, ODF, EPUB) before any library opens them.

Refuses zip bombs (declared size and overall ratio; zipfile never inflates a member past its
declared size, so the declared sizes are a real bound) and XML with a document type
declaration, which is where billion-laughs entity expansion and XXE live. Libraries parse XML
with lxml or expat under their own settings; scanning the bytes first makes those attacks
impossible whatever the settings are.
"""

from __future__ import annotations

import codecs
import io
import re
import zipfile
import zlib
from collections.abc import Iterator
from typing import IO

from .limits import ParseLimits
from .verdicts import FileBroken, FileSkipped

_CHUNK = 1024 * 1024
_OVERLAP = 4096
# Only inspect ratios once the content is big enough to hurt; tiny files compress oddly.
_RATIO_FLOOR_BYTES = 1024 * 1024
_ASCII = bytes(range(128))
_ASCII_TEXT = _ASCII.decode("ascii")
_EBCDIC_XML = b"\x4c\x6f\xa7\x94"
_WIDE_XML_STARTS = (
    codecs.BOM_UTF32_LE,
    codecs.BOM_UTF32_BE,
    codecs.BOM_UTF16_LE,
    codecs.BOM_UTF16_BE,
    b"\x00\x00\x00<",
    b"<\x00\x00\x00",
    b"<\x00",
    b"\x00<",
    _EBCDIC_XML,
)
_DECLARED_ENCODING = re.compile(rb"""^\s*<\?xml[^>]*?encoding\s*=\s*["']([A-Za-z0-9._:-]+)["']""")
_ANY_DTD = re.compile(r"<!(DOCTYPE|ENTITY)")
# EPUB 2 content documents carry a plain XHTML DOCTYPE; only an internal subset can declare
# entities, so that (and any ENTITY) is what is refused there.
_DANGEROUS_DTD = re.compile(r"<!ENTITY|<!DOCTYPE[^>\[]*\[")


def check_zip(
    data: bytes, extension: str, limits: ParseLimits, *, allow_plain_doctype: bool
) -> None:
    """Refuse a zip-based document that is a bomb, encrypted or carries DTDs in its XML.

    Args:
        data: The whole file.
        extension: For messages.
        limits: Size, ratio and member-count caps.
        allow_plain_doctype: Accept ``<!DOCTYPE name PUBLIC ...>`` without an internal subset
            (EPUB 2 XHTML); entity declarations are refused either way.

    Raises:
        FileBroken: Zip bomb, too many members, DTD in XML, damaged archive.
        FileSkipped: Encrypted members.
    """
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, EOFError, ValueError, OSError):
        raise FileBroken(f"not a valid .{extension} (damaged zip archive)") from None
    with archive:
        members = archive.infolist()
        _check_sizes(members, limits)
        if any(member.flag_bits & 0x1 for member in members):
            raise FileSkipped("encrypted (password-protected)")
        pattern = _DANGEROUS_DTD if allow_plain_doctype else _ANY_DTD
        for member in members:
            if member.is_dir() or member.file_size == 0:
                continue
            try:
                _scan_member(archive, member, pattern)
            except (zipfile.BadZipFile, EOFError, ValueError, OSError, zlib.error):
                raise FileBroken(
                    f"not a valid .{extension} (damaged zip member {member.filename!r})"
                ) from None
            except NotImplementedError:
                raise FileBroken(
                    f"the .{extension} uses a zip compression method that is not supported"
                ) from None


def _check_sizes(members: list[zipfile.ZipInfo], limits: ParseLimits) -> None:
    if len(members) > limits.zip_max_members:
        raise FileBroken(
            f"looks like a zip bomb: {len(members):,} files inside "
            f"(the limit is {limits.zip_max_members:,})"
        )
    total = sum(member.file_size for member in members)
    packed = sum(member.compress_size for member in members)
    if total > limits.zip_max_total_bytes:
        raise FileBroken(
            f"looks like a zip bomb: it would expand to {total / 2**20:,.0f} MB "
            f"(the limit is {limits.zip_max_total_bytes / 2**20:,.0f} MB)"
        )
    if total > _RATIO_FLOOR_BYTES and total > limits.zip_max_ratio * max(packed, 1):
        raise FileBroken(
            f"looks like a zip bomb: it expands {total / max(packed, 1):,.0f} times "
            f"(more than {limits.zip_max_ratio:,.0f}:1)"
        )


def _scan_member(
    archive: zipfile.ZipFile, member: zipfile.ZipInfo, pattern: re.Pattern[str]
) -> None:
    with archive.open(member) as stream:
        first = stream.read(_CHUNK)
        if not _may_be_xml(first):
            return
        if first.startswith(_EBCDIC_XML):
            raise FileBroken(f"refused: {member.filename!r} is XML in an EBCDIC encoding")
        encoding = _xml_encoding(first, member.filename)
        for text in _decoded_chunks(first, stream, encoding):
            found = pattern.search(text)
            if found:
                raise FileBroken(
                    f"refused: {member.filename!r} contains an XML document type declaration "
                    f"({found.group(0).rstrip('[')}…), which can expand entities without limit "
                    "(billion laughs) or read other files (XXE)"
                )


def _may_be_xml(first: bytes) -> bool:
    """False for members no XML parser would accept: they must start with markup.

    Images, fonts and binary blobs are skipped (Mac printer settings embed a plist with a
    DOCTYPE inside binary data; no library reads that member as XML).
    """
    if first.startswith(_WIDE_XML_STARTS):
        return True
    return first.removeprefix(codecs.BOM_UTF8).lstrip(b" \t\r\n").startswith(b"<")


def _xml_encoding(first: bytes, name: str) -> str:
    """The codec to read a member with so that ASCII markup is found in any XML encoding."""
    if first.startswith(
        (codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE, b"\x00\x00\x00<", b"<\x00\x00\x00")
    ):
        return "utf-32-le" if first[:1] in (b"\xff", b"<") else "utf-32-be"
    if first.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE, b"<\x00", b"\x00<")):
        return "utf-16-le" if first[:1] in (b"\xff", b"<") else "utf-16-be"
    declared = _DECLARED_ENCODING.match(first.removeprefix(codecs.BOM_UTF8))
    if declared is None:
        return "latin-1"
    label = declared.group(1).decode("ascii")
    try:
        # Every ASCII byte must mean the same character (UTF-7, for one, turns "+ADw-" into "<").
        same_ascii = _ASCII.decode(label) == _ASCII_TEXT
    except (LookupError, UnicodeError):
        same_ascii = False
    if not same_ascii:
        raise FileBroken(f"refused: {name!r} is XML in an unexpected encoding ({label})")
    # Any ASCII-compatible encoding: latin-1 maps bytes 1:1, so ASCII markup is found as is.
    return "latin-1"


def _decoded_chunks(first: bytes, stream: IO[bytes], encoding: str) -> Iterator[str]:
    decoder = codecs.getincrementaldecoder(encoding)(errors="replace")
    tail = ""
    chunk = first
    while chunk:
        text = tail + decoder.decode(chunk)
        yield text
        tail = text[-_OVERLAP:]
        chunk = stream.read(_CHUNK)
    rest = decoder.decode(b"", final=True)
    if rest:
        yield tail + rest
