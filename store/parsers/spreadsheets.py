"""Spreadsheets: XLSX via openpyxl and legacy XLS via xlrd (one page per sheet), and CSV via the
csv module."""

from __future__ import annotations

import contextlib
import csv
import datetime
import io
from typing import Any

from .office import guard_zip
from .registry import ParseInput, register
from .text import decode_input
from .verdicts import FileBroken, FileSkipped

# Rows of a sheet are joined into blocks of this many rows so the chunker sees paragraphs.
_ROWS_PER_BLOCK = 20


def _cell_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, datetime.datetime) and value.time() == datetime.time(0):
        return value.date().isoformat()
    if isinstance(value, (datetime.date, datetime.time)):
        return value.isoformat()
    return " ".join(str(value).split())


def _rows_to_text(rows: list[str]) -> str:
    blocks = [
        "\n".join(rows[i : i + _ROWS_PER_BLOCK]) for i in range(0, len(rows), _ROWS_PER_BLOCK)
    ]
    return "\n\n".join(blocks)


@register("xlsx")
def parse_xlsx(source: ParseInput) -> None:
    """Cell values (cached results, not formulas), rows as ``a | b | c``, one page per sheet."""
    guard_zip(source)
    import openpyxl

    try:
        workbook = openpyxl.load_workbook(io.BytesIO(source.data), read_only=True, data_only=True)
    except Exception as error:  # openpyxl raises many types for bad parts
        detail = str(error).strip() or type(error).__name__
        raise FileBroken(f"not a valid .{source.extension or 'xlsx'} ({detail[:120]})") from None
    try:
        for number, sheet in enumerate(workbook.worksheets, start=1):
            if not _add_sheet(source, number, sheet.title, sheet.iter_rows(values_only=True)):
                break
    finally:
        workbook.close()


def _add_sheet(source: ParseInput, number: int, title: str, rows_of_values: Any) -> bool:
    """Add one sheet's non-empty rows as ``a | b | c`` (one page); False when the collector is
    full."""
    rows: list[str] = []
    size = 0
    for values in rows_of_values:
        cells = [_cell_text(value) for value in values]
        while cells and not cells[-1]:
            cells.pop()
        if not cells:
            continue
        row = " | ".join(cells)
        rows.append(row)
        size += len(row) + 1
        if source.collector.total_chars + size >= source.collector.max_chars:
            break
    if not rows:
        return True
    return source.collector.add(f"## {title}\n\n" + _rows_to_text(rows), page=number, label=f"sheet {title}")


@register("xls")
def parse_xls(source: ParseInput) -> None:
    """A legacy Excel workbook (BIFF, .xls): cell values as in ``parse_xlsx``, dates as dates."""
    import xlrd

    try:
        book = xlrd.open_workbook(
            file_contents=source.data, on_demand=True, logfile=io.StringIO(), verbosity=0
        )
    except xlrd.XLRDError as error:
        if "encrypted" in str(error).lower():
            raise FileSkipped(
                f"password-protected .{source.extension or 'xls'} workbook; remove the password "
                "to index it"
            ) from None
        raise FileBroken(f"not a valid .{source.extension or 'xls'} ({str(error)[:120]})") from None
    except Exception as error:  # a damaged compound file raises struct, index or value errors
        detail = str(error).strip() or type(error).__name__
        raise FileBroken(f"not a valid .{source.extension or 'xls'} ({detail[:120]})") from None

    def values(sheet: Any) -> Any:
        for r in range(sheet.nrows):
            row = []
            for cell in sheet.row(r):
                value = cell.value
                if cell.ctype == xlrd.XL_CELL_DATE:
                    # An impossible date stays the number it is stored as.
                    with contextlib.suppress(ValueError, OverflowError, xlrd.xldate.XLDateError):
                        value = xlrd.xldate_as_datetime(value, book.datemode)
                elif cell.ctype == xlrd.XL_CELL_BOOLEAN:
                    value = bool(value)
                elif cell.ctype == xlrd.XL_CELL_ERROR:
                    value = xlrd.error_text_from_code.get(value, "#ERR")
                row.append(value)
            yield row

    try:
        for number in range(book.nsheets):
            sheet = book.sheet_by_index(number)
            if not _add_sheet(source, number + 1, sheet.name, values(sheet)):
                break
            book.unload_sheet(number)
    except xlrd.XLRDError as error:
        raise FileBroken(f"not a valid .{source.extension or 'xls'} ({str(error)[:120]})") from None
    finally:
        book.release_resources()


@register("csv")
def parse_csv(source: ParseInput) -> None:
    """Rows as ``a | b | c``; the delimiter is sniffed from the first lines."""
    text = decode_input(source)
    sample = text[: 64 * 1024]
    try:
        dialect: type[csv.Dialect] | csv.Dialect = csv.Sniffer().sniff(sample, delimiters=",;\t|")
    except csv.Error:
        dialect = csv.excel
    rows: list[str] = []
    size = 0
    try:
        for values in csv.reader(io.StringIO(text), dialect):
            cells = [" ".join(value.split()) for value in values]
            if not any(cells):
                continue
            row = " | ".join(cells)
            rows.append(row)
            size += len(row) + 1
            if size >= source.collector.max_chars:
                break
    except csv.Error:
        # A field larger than csv's limit or a stray quote: the text itself is still useful.
        source.warnings.append("the CSV structure is damaged; indexed as plain text")
        source.collector.add(text)
        return
    source.collector.add(_rows_to_text(rows))
