"""PDF via PDFium (pypdfium2): one page of text per PDF page, numbered from 1.

PDFium is the PDF engine of Chromium: fast (a 600-page PDF reads in seconds, where pure-Python
pypdf needed most of the time budget) and hardened by years of fuzzing on hostile files. It runs,
like every parser, inside a worker process with a timeout and a memory cap.

A filled form's answers are its content, but they live in widget annotations, not in the page's
text layer: each page's filled fields follow its text as "Field: value" lines.

Right-to-left text comes out in logical order: PDFium applies the Unicode bidi algorithm to each
line (glyphs are drawn in visual order) and maps Arabic presentation forms to their letters, so
the words BM25 indexes are the words people type.
"""

from __future__ import annotations

import ctypes
from typing import Any

from .registry import ParseInput, register
from .verdicts import FileBroken, FileSkipped

# PDFium's load errors (FPDF_ERR_*) that mean "encrypted", not "broken".
_ERR_PASSWORD = 4
_ERR_SECURITY = 5
# Form widgets read per page at most (a hostile page may carry millions), and the longest
# field name or value kept, in UTF-16 bytes.
_MAX_WIDGETS = 5000
_MAX_FIELD_BYTES = 256 * 1024


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
        _init_forms(document)
        _read_pages(source, document)
    finally:
        document.close()


def _read_pages(source: ParseInput, document: Any) -> None:
    _read_title(source, document)
    count = len(document)
    empty = 0
    failed = 0
    seen_fields: set[str] = set()
    for number in range(1, count + 1):
        # The first page is always attempted; the hard timeout covers a page that never ends.
        if number > 1 and source.collector.over_time():
            break
        try:
            text = _page_text(document, number - 1, seen_fields)
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


def _init_forms(document: Any) -> None:
    """Set up PDFium's form environment (before any page loads), if the PDF has a form."""
    import pypdfium2.raw as pdfium_c

    try:
        if document.get_formtype() != pdfium_c.FORMTYPE_NONE:
            document.init_forms()
    except Exception:  # a broken form costs its field values, never the text
        pass


def _page_text(document: Any, index: int, seen_fields: set[str]) -> str:
    page = document[index]
    try:
        text_page = page.get_textpage()
        try:
            text = str(text_page.get_text_bounded())
        finally:
            text_page.close()
        fields = _field_lines(document, page, seen_fields)
    finally:
        page.close()
    if fields:
        text = f"{text}\n\n" + "\n".join(fields) if text.strip() else "\n".join(fields)
    return text  # CRLF line ends become \n in normalize_text, like every parser's


def _field_lines(document: Any, page: Any, seen: set[str]) -> list[str]:
    """ "Field: value" for each filled form field whose first widget is on ``page``.

    Text fields, combo and list boxes give their value; a ticked check box or the chosen
    radio button its export value ("Yes"); empty fields, push buttons and signatures nothing.
    A field's label is its tooltip (the question people read) or else its name.
    """
    import pypdfium2.raw as pdfium_c

    formenv = getattr(document, "formenv", None)
    if formenv is None:
        return []
    form = formenv.raw
    lines: list[str] = []
    try:
        count = min(pdfium_c.FPDFPage_GetAnnotCount(page.raw), _MAX_WIDGETS)
    except Exception:
        return []
    for number in range(count):
        annot = pdfium_c.FPDFPage_GetAnnot(page.raw, number)
        if not annot:
            continue
        try:
            if pdfium_c.FPDFAnnot_GetSubtype(annot) != pdfium_c.FPDF_ANNOT_WIDGET:
                continue
            line = _field_line(pdfium_c, form, annot, seen)
            if line:
                lines.append(line)
        except Exception:  # one odd widget costs its own value only
            continue
        finally:
            pdfium_c.FPDFPage_CloseAnnot(annot)
    return lines


def _field_line(pdfium_c: Any, form: Any, annot: Any, seen: set[str]) -> str | None:
    kind = pdfium_c.FPDFAnnot_GetFormFieldType(form, annot)
    name = _form_string(pdfium_c.FPDFAnnot_GetFormFieldName, form, annot)
    if not name or name in seen:
        return None
    if kind in (pdfium_c.FPDF_FORMFIELD_CHECKBOX, pdfium_c.FPDF_FORMFIELD_RADIOBUTTON):
        if not pdfium_c.FPDFAnnot_IsChecked(form, annot):
            return None  # a radio group's chosen button may be a later widget
        value = _form_string(pdfium_c.FPDFAnnot_GetFormFieldExportValue, form, annot) or "Yes"
    elif kind in (
        pdfium_c.FPDF_FORMFIELD_TEXTFIELD,
        pdfium_c.FPDF_FORMFIELD_COMBOBOX,
        pdfium_c.FPDF_FORMFIELD_LISTBOX,
    ):
        value = _form_string(pdfium_c.FPDFAnnot_GetFormFieldValue, form, annot)
    else:
        return None
    seen.add(name)
    value = " ".join(value.split())
    if not value:
        return None
    label = _form_string(pdfium_c.FPDFAnnot_GetFormFieldAlternateName, form, annot) or name
    return f"{' '.join(label.split())}: {value}"


def _form_string(function: Any, form: Any, annot: Any) -> str:
    """A UTF-16 string from one of PDFium's FPDFAnnot_GetFormField* calls ("" if none)."""
    import pypdfium2.raw as pdfium_c

    size = int(function(form, annot, None, 0))
    if size <= 2 or size > _MAX_FIELD_BYTES:
        return ""
    buffer = ctypes.create_string_buffer(size)
    function(form, annot, ctypes.cast(buffer, ctypes.POINTER(pdfium_c.FPDF_WCHAR)), size)
    return buffer.raw[: size - 2].decode("utf-16-le", "replace")


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
