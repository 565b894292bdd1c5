"""Which parser a file needs: by content (magic bytes) first, then by extension.

Content wins where it is unambiguous (a PDF named .txt is a PDF); the extension decides between
the text formats and tells which zip or OLE family the user expected.
"""

from __future__ import annotations

import io
import zipfile

from .encoding import looks_like_text
from .verdicts import FileBroken, FileSkipped

OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")

# Kinds whose content is a zip archive; detection confirms the members before parsing.
ZIP_KINDS = frozenset({"docx", "pptx", "xlsx", "odt", "ods", "odp", "epub"})
# Kinds decoded as text before parsing; only these may be read partially.
TEXT_KINDS = frozenset({"text", "markdown", "rst", "html", "xml", "csv", "eml", "ipynb"})

_SOURCE_CODE = (
    "py pyi pyw c h cc cpp cxx hpp hh hxx cs java kt kts scala go rs rb php pl pm lua r jl "
    "swift m mm js mjs cjs ts tsx jsx vue svelte sh bash zsh fish ps1 psm1 bat cmd sql "
    "hs ml mli fs fsx ex exs erl clj cljs lisp el scm dart groovy gradle tf hcl proto "
    "graphql gql asm s v sv vhd vhdl f f90 pas d nim zig cu cuh"
)
_PLAIN = (
    "txt text log json jsonl ndjson yaml yml toml ini cfg conf properties env "
    "tex bib sty org adoc asciidoc textile wiki mediawiki srt vtt tsv diff patch "
    "css scss less sass dockerfile makefile cmake mk"
)
EXTENSION_KINDS: dict[str, str] = {
    **dict.fromkeys(_SOURCE_CODE.split(), "text"),
    **dict.fromkeys(_PLAIN.split(), "text"),
    "md": "markdown",
    "markdown": "markdown",
    "mdown": "markdown",
    "mkd": "markdown",
    "rst": "rst",
    "rest": "rst",
    "html": "html",
    "htm": "html",
    "xhtml": "html",
    "xml": "xml",
    "rss": "xml",
    "atom": "xml",
    "svg": "xml",
    "csv": "csv",
    "eml": "eml",
    "rtf": "rtf",
    "ipynb": "ipynb",
    "pdf": "pdf",
    "docx": "docx",
    "docm": "docx",
    "pptx": "pptx",
    "pptm": "pptx",
    "xlsx": "xlsx",
    "xlsm": "xlsx",
    "odt": "odt",
    "ods": "ods",
    "odp": "odp",
    "epub": "epub",
}
# Extensions whose OLE (Compound File) content is a legacy Excel workbook (read by xlrd; an
# encrypted one is said to be so by the parser).
_OLE_SPREADSHEETS = frozenset(["xls", "xlt"])
# Extensions whose OLE (Compound File) content is an Outlook message (read by olefile).
_OLE_MAIL = frozenset(["msg"])
# Extensions whose OLE (Compound File) content is a Word 97-2003 document (read by olefile; an
# encrypted one, or Word 6/95, is said to be so by the parser).
_OLE_WORD = frozenset(["doc", "dot"])
# Extensions whose OLE content is a PowerPoint 97-2003 presentation (read by olefile).
_OLE_SLIDES = frozenset(["ppt", "pot", "pps"])
# Extensions whose OLE (Compound File) content means a legacy or encrypted Office document.
_OLE_OFFICE = frozenset(
    ["doc", "dot", "docx", "docm", "xls", "xlt", "xlsx", "xlsm", "ppt", "pot", "pptx", "pptm"]
)

# Common binary formats named in the "unsupported type" reason rather than sniffed as text.
_BINARY_MAGICS = (
    b"\x89PNG",
    b"\xff\xd8\xff",
    b"GIF8",
    b"RIFF",
    b"ID3",
    b"OggS",
    b"fLaC",
    b"\x1f\x8b",
    b"BZh",
    b"7z\xbc\xaf",
    b"Rar!",
    b"\x7fELF",
    b"MZ",
    b"SQLite format 3",
    b"{\\rtf",
    b"II*\x00",  # TIFF, little-endian
    b"MM\x00*",  # TIFF, big-endian
)


def _known_binary(head: bytes) -> bool:
    """A common binary format: named "unsupported type" rather than sniffed as text."""
    if head.startswith(_BINARY_MAGICS):
        return True
    if head[4:8] == b"ftyp":  # ISO media: MP4, M4A, MOV, HEIC, AVIF
        return True
    return head.startswith(b"BM") and head[6:10] == b"\x00\x00\x00\x00"  # BMP


_ODF_MIMETYPES = {
    "application/vnd.oasis.opendocument.text": "odt",
    "application/vnd.oasis.opendocument.text-template": "odt",
    "application/vnd.oasis.opendocument.spreadsheet": "ods",
    "application/vnd.oasis.opendocument.spreadsheet-template": "ods",
    "application/vnd.oasis.opendocument.presentation": "odp",
    "application/vnd.oasis.opendocument.presentation-template": "odp",
}


def _unsupported(extension: str) -> FileSkipped:
    shown = f".{extension}" if extension else "no extension"
    return FileSkipped(f"unsupported type ({shown})")


def detect_kind(head: bytes, extension: str) -> str:
    """Decide the kind of a file from its first bytes and its lower-case extension.

    Zip-based files come back as "zip"; ``zip_kind`` then reads the member list.

    A file of no known type whose first bytes are text (``looks_like_text``) is "text";
    otherwise it is skipped as a binary file of unknown type.

    Raises:
        FileSkipped: Unsupported type or binary file of unknown type, or a
            legacy/password-protected Office file.
        FileBroken: The extension promises a format the content is not (a .docx that is not a
            zip, a .pdf without a PDF header).
    """
    expected = EXTENSION_KINDS.get(extension)
    if head.startswith(b"%PDF-") or (expected == "pdf" and b"%PDF-" in head[:1024]):
        return "pdf"
    if head.startswith(_ZIP_MAGICS):
        return "zip"
    if head.startswith(OLE_MAGIC):
        if extension in _OLE_SPREADSHEETS:
            return "xls"
        if extension in _OLE_MAIL:
            return "msg"
        if extension in _OLE_WORD:
            return "doc"
        if extension in _OLE_SLIDES:
            return "ppt"
        if extension in _OLE_OFFICE:
            raise FileSkipped(
                f"password-protected or legacy Office file (.{extension}); "
                "remove the password or save it in a current format to index it"
            )
        raise _unsupported(extension)
    if expected in ZIP_KINDS:
        raise FileBroken(f"not a valid .{extension} (not a zip archive)")
    if expected == "pdf":
        raise FileBroken("not a valid PDF (the file does not start with a PDF header)")
    if expected is not None:
        return expected
    if _known_binary(head):
        raise _unsupported(extension)
    if looks_like_text(head):
        # README, LICENSE, Makefile, setup.cfg, MANIFEST.in, .conf: text is worth indexing
        # whatever its name.
        return "text"
    shown = f" (.{extension})" if extension else ""
    raise FileSkipped(f"binary file of unknown type{shown}")


def zip_kind(data: bytes, extension: str) -> str:
    """The document kind inside a zip archive, judged by its members.

    Raises:
        FileBroken: The archive cannot be read.
        FileSkipped: A zip that is no document format we parse (a plain .zip, a .jar).
    """
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            names = set(archive.namelist())
            mimetype = b""
            if "mimetype" in names and archive.getinfo("mimetype").file_size < 256:
                mimetype = archive.read("mimetype").strip()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, ValueError, OSError):
        shown = f".{extension}" if extension else "zip"
        raise FileBroken(f"not a valid {shown} (damaged zip archive)") from None
    except NotImplementedError:
        raise FileBroken(
            "the zip archive uses a compression method that is not supported"
        ) from None
    if "word/document.xml" in names:
        return "docx"
    if "ppt/presentation.xml" in names:
        return "pptx"
    if "xl/workbook.xml" in names:
        return "xlsx"
    if mimetype == b"application/epub+zip":
        return "epub"
    odf = _ODF_MIMETYPES.get(mimetype.decode("ascii", "replace"))
    if odf is not None:
        return odf
    expected = EXTENSION_KINDS.get(extension)
    if expected in ZIP_KINDS:
        raise FileBroken(
            f"not a valid .{extension} (a zip archive without the parts a .{extension} has)"
        )
    raise _unsupported(extension)
