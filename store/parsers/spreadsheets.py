"""Spreadsheets: XLSX via openpyxl (one page per sheet) and CSV via the csv module."""

from __future__ import annotations

import csv
import datetime
import io
from typing import Any

from .office import guard_zip
from .registry import ParseInput, register
from .text import decode_input
from .verdicts import FileBroken

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
            rows: list[str] = []
            size = 0
            for values in sheet.iter_rows(values_only=True):
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
                continue
            text = f"## {sheet.title}\n\n" + _rows_to_text(rows)
            if not source.collector.add(text, page=number, label=f"sheet {sheet.title}"):
                break
    finally:
        workbook.close()


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
