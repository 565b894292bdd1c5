"""PDF via PDFium (pypdfium2): one page of text per PDF page, numbered from 1.

PDFium is the PDF engine of Chromium: fast (a 600-page PDF reads in seconds, where pure-Python
pypdf needed most of the time budget) and hardened by years of fuzzing on hostile files. It runs,
like every parser, inside a worker process with a timeout and a memory cap.
"""

from __future__ import annotations

from typing import Any

from .registry import ParseInput, register
from .verdicts import FileBroken, FileSkipped

# PDFium's load errors (FPDF_ERR_*) that mean "encrypted", not "broken".
_ERR_PASSWORD = 4
_ERR_SECURITY = 5


@register("pdf")
def parse_pdf(source: ParseInput) -> None:
    """Extract the text layer page by page.

    Encrypted files open when the user password is empty; otherwise they are skipped. A file
    whose pages have no text at all is skipped as scanned (there is no OCR).
    """
    import pypdfium2 as pdfium

    try:
        document = pdfium.PdfDocument(source.data)
    except pdfium.PdfiumError as error:
        code = getattr(error, "err_code", None)
        if code == _ERR_PASSWORD:
            raise FileSkipped("encrypted (password-protected)") from None
        if code == _ERR_SECURITY:
            raise FileSkipped("encrypted with a security scheme PDFium does not support") from None
        raise FileBroken(f"not a valid PDF (damaged or truncated: {_short(error)})") from None
    try:
        _read_pages(source, document)
    finally:
        document.close()


def _read_pages(source: ParseInput, document: Any) -> None:
    _read_title(source, document)
    count = len(document)
    empty = 0
    failed = 0
    for number in range(1, count + 1):
        # The first page is always attempted; the hard timeout covers a page that never ends.
        if number > 1 and source.collector.over_time():
            break
        try:
            text = _page_text(document, number - 1)
        except Exception:  # one unreadable page must not lose the others
            failed += 1
            continue
        if not text.strip():
            empty += 1
            continue
        if not source.collector.add(text, page=number):
            break
    if not source.collector.pages and not source.collector.out_of_time:
        if failed and failed + empty == count:
            raise FileBroken(f"not a valid PDF (none of its {count} pages could be read)")
        raise FileSkipped("no text layer (scanned?); text in images is not recognised")
    if failed:
        source.warnings.append(f"{failed} of {count} pages could not be read and were left out")
    if empty:
        source.warnings.append(f"{empty} of {count} pages have no text layer (scanned images?)")


def _page_text(document: Any, index: int) -> str:
    page = document[index]
    try:
        text_page = page.get_textpage()
        try:
            text = text_page.get_text_bounded()
        finally:
            text_page.close()
    finally:
        page.close()
    return str(text)  # CRLF line ends become \n in normalize_text, like every parser's


def _read_title(source: ParseInput, document: Any) -> None:
    try:
        title = document.get_metadata_value("Title")
    except Exception:  # a broken info dictionary costs only the title
        return
    if isinstance(title, str) and title.strip():
        source.title = title.strip()


def _short(error: Exception) -> str:
    text = str(error).strip() or "unreadable structure"
    return text if len(text) <= 120 else text[:117] + "…"
