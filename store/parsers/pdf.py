"""PDF via pypdf: one page of text per PDF page, numbered from 1."""

from __future__ import annotations

import io
import logging

from .registry import ParseInput, register
from .verdicts import FileBroken, FileSkipped


@register("pdf")
def parse_pdf(source: ParseInput) -> None:
    """Extract the text layer page by page.

    Encrypted files open when the user password is empty; otherwise they are skipped. A file
    whose pages have no text at all is skipped as scanned (there is no OCR).
    """
    from pypdf import PdfReader
    from pypdf.errors import DependencyError, FileNotDecryptedError, PdfReadError

    # pypdf logs every repairable oddity of real-world PDFs; they are not the user's concern.
    logging.getLogger("pypdf").setLevel(logging.ERROR)
    try:
        reader = PdfReader(io.BytesIO(source.data), strict=False)
        if reader.is_encrypted:
            _decrypt(reader)
        pages = reader.pages
        count = len(pages)
    except (FileSkipped, FileBroken):
        raise
    except DependencyError:
        raise FileSkipped(
            "encrypted with AES; reading it needs the 'cryptography' package, which is not installed"
        ) from None
    except FileNotDecryptedError:
        raise FileSkipped("encrypted (password-protected)") from None
    except (
        PdfReadError,
        ValueError,
        KeyError,
        TypeError,
        AttributeError,
        IndexError,
        OSError,
    ) as error:
        raise FileBroken(f"not a valid PDF (damaged or truncated: {_short(error)})") from None
    _read_title(source, reader)
    empty = 0
    failed = 0
    for number in range(1, count + 1):
        # The first page is always attempted; the hard timeout covers a page that never ends.
        if number > 1 and source.collector.over_time():
            break
        try:
            text = pages[number - 1].extract_text() or ""
        except RecursionError:
            raise FileBroken(
                f"page {number} is nested too deeply to read (damaged or hostile PDF)"
            ) from None
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


def _decrypt(reader: object) -> None:
    from pypdf import PasswordType, PdfReader

    assert isinstance(reader, PdfReader)
    # An owner password alone (empty user password) only restricts printing/copying.
    if reader.decrypt("") == PasswordType.NOT_DECRYPTED:
        raise FileSkipped("encrypted (password-protected)")


def _read_title(source: ParseInput, reader: object) -> None:
    from pypdf import PdfReader

    assert isinstance(reader, PdfReader)
    try:
        metadata = reader.metadata
        title = metadata.title if metadata is not None else None
    except Exception:  # a broken info dictionary costs only the title
        return
    if isinstance(title, str) and title.strip():
        source.title = title.strip()


def _short(error: Exception) -> str:
    text = str(error).strip() or "unreadable structure"
    return text if len(text) <= 120 else text[:117] + "…"
