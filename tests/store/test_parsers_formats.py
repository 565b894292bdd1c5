"""parse_file on generated office, e-book, e-mail, notebook and CSV files."""

from __future__ import annotations

import zipfile
from pathlib import Path

from bastion.store.parsers import parse_file

from .document_factory import (
    ok_text,
    write_docx,
    write_eml,
    write_epub,
    write_odt,
    write_pptx,
    write_xlsx,
)

# -- Office --------------------------------------------------------------------------------------


def test_docx_headings_paragraphs_and_table_in_order(tmp_path: Path) -> None:
    outcome = parse_file(write_docx(tmp_path / "report.docx"))
    assert ok_text(outcome) == (
        "# Quarterly report\n\n# Introduction\n\nThe first paragraph mentions aardvarks.\n\n"
        "The second paragraph mentions zebras.\n\n## Numbers\n\nRegion | Revenue\nNorth | 42\n\n"
        "After the table."
    )
    assert outcome.document is not None
    assert outcome.document.title == "Quarterly report"
    assert outcome.document.kind == "docx"


def test_pptx_slides_are_pages(tmp_path: Path) -> None:
    outcome = parse_file(write_pptx(tmp_path / "deck.pptx"))
    assert outcome.document is not None, outcome.reason
    pages = outcome.document.pages
    assert [page.page for page in pages] == [1, 2, 3]
    assert pages[1].label == "slide 2"
    assert pages[1].text.startswith("# Slide title 2\n\nBody text on slide 2")
    assert "Key | Value\ncolour | teal" in pages[1].text
    assert "Notes: Remember the teal." in pages[1].text


def test_xlsx_sheets_are_pages(tmp_path: Path) -> None:
    outcome = parse_file(write_xlsx(tmp_path / "book.xlsx"))
    assert outcome.document is not None, outcome.reason
    pages = outcome.document.pages
    assert [(page.page, page.label) for page in pages] == [(1, "sheet Sales"), (2, "sheet Notes")]
    assert pages[0].text == "## Sales\n\nRegion | Amount\nNorth | 10\nSouth | 32"
    assert pages[1].text == "## Notes\n\nBudget approved by the board"


LEGACY_XLS = Path(__file__).parent / "data" / "markitdown-test.xls"


def test_legacy_xls_sheets_are_pages(tmp_path: Path) -> None:
    outcome = parse_file(LEGACY_XLS)
    assert outcome.document is not None, outcome.reason
    pages = outcome.document.pages
    assert [page.label for page in pages] == ["sheet Sheet1", "sheet 09060124-b5e7-4717-9d07-3c046eb"]
    assert pages[0].text.startswith("## Sheet1\n\nAlpha | Beta | Gamma | Delta\n89 | 82 | 100 | 12")
    assert "58 | 6ff4173b-42a5-4784-9b19-f49caff4d93d | 22 | 9" in pages[0].text
    assert pages[1].text.endswith("13 | 14 | 15 | affc7dad-52dc-4b98-9b5d-51e65d8a8ad0")


def test_a_damaged_xls_fails_and_a_web_export_named_xls_is_read_as_text(tmp_path: Path) -> None:
    damaged = tmp_path / "damaged.xls"
    damaged.write_bytes(LEGACY_XLS.read_bytes()[:3000])  # the compound file cut short
    outcome = parse_file(damaged)
    assert outcome.status == "failed" and outcome.reason.startswith("not a valid .xls")
    export = tmp_path / "report.xls"  # many web apps save tab-separated text as .xls
    export.write_text("Region\tAmount\nNorth\t10\n")
    assert "North" in ok_text(parse_file(export))


def test_csv_rows_and_sniffed_delimiter(tmp_path: Path) -> None:
    path = tmp_path / "table.csv"
    path.write_text('name;city\n"Smith; John";Paris\nDoe;Berlin\n')
    assert ok_text(parse_file(path)) == "name | city\nSmith; John | Paris\nDoe | Berlin"


# -- OpenDocument, EPUB, mail ----------------------------------------------------------------------


def test_pretty_printed_odt_is_read(tmp_path: Path) -> None:
    # odfpy's document.text shortcut points at a whitespace node in indented files.
    source = write_odt(tmp_path / "plain.odt")
    pretty = tmp_path / "pretty.odt"
    with zipfile.ZipFile(source) as reader, zipfile.ZipFile(pretty, "w") as writer:
        for item in reader.infolist():
            data = reader.read(item)
            if item.filename == "content.xml":
                data = data.replace(b"<office:body>", b"<office:body>\n  ").replace(
                    b"<office:text>", b"<office:text>\n    "
                )
            writer.writestr(item, data)
    assert "Pelicans were discussed." in ok_text(parse_file(pretty))


def test_odt_heading_and_paragraphs(tmp_path: Path) -> None:
    outcome = parse_file(write_odt(tmp_path / "minutes.odt"))
    assert (
        ok_text(outcome) == "# Minutes\n\nThe committee met on Tuesday.\n\nPelicans were discussed."
    )
    assert outcome.document is not None and outcome.document.kind == "odt"


def test_epub_chapters_are_pages_in_reading_order(tmp_path: Path) -> None:
    outcome = parse_file(write_epub(tmp_path / "book.epub"))
    assert outcome.document is not None, outcome.reason
    pages = outcome.document.pages
    assert [(page.page, page.label) for page in pages] == [
        (1, "chapter Chapter 1"),
        (2, "chapter Chapter 2"),
    ]
    assert pages[0].text == "# Chapter 1\n\nThe lighthouse keeper woke early."
    assert outcome.document.title == "A Test Book"


def test_eml_headers_body_and_attachment_names(tmp_path: Path) -> None:
    outcome = parse_file(write_eml(tmp_path / "mail.eml"))
    assert ok_text(outcome) == (
        "From: Alice <alice@example.org>\nTo: Bob <bob@example.org>\nSubject: Budget meeting\n"
        "Date: Tue, 04 Mar 2025 10:00:00 +0000\n\nMeet at noon in room 4.\n\nBring the figures.\n\n"
        "Attachments: figures.pdf"
    )
    assert outcome.document is not None and outcome.document.title == "Budget meeting"


def test_eml_html_body_is_converted_without_scripts(tmp_path: Path) -> None:
    text = ok_text(parse_file(write_eml(tmp_path / "html.eml", html=True)))
    assert "Meet at noon." in text
    assert "steal" not in text


def test_html_navigation_and_buttons_are_not_content(tmp_path: Path) -> None:
    path = tmp_path / "chrome.html"
    path.write_text(
        "<body><nav>Home About</nav><div role='navigation'>Menu</div><button>move to sidebar</button>"
        "<form><select><option>English</option></select></form><p>Article body.</p></body>"
    )
    assert ok_text(parse_file(path)) == "Article body."


def test_notebook_cells_without_json_or_outputs(tmp_path: Path) -> None:
    import json

    path = tmp_path / "analysis.ipynb"
    notebook = {
        "metadata": {"language_info": {"name": "python"}},
        "nbformat": 4,
        "cells": [
            {"cell_type": "markdown", "source": ["# Analysis\n", "Some prose."]},
            {"cell_type": "code", "source": "print(1)", "outputs": [{"text": "OUTPUT-BLOB"}]},
        ],
    }
    path.write_text(json.dumps(notebook))
    outcome = parse_file(path)
    assert ok_text(outcome) == "# Analysis\nSome prose.\n\n```python\nprint(1)\n```"
    assert outcome.document is not None and outcome.document.title == "Analysis"


def test_broken_notebook_is_indexed_as_text(tmp_path: Path) -> None:
    path = tmp_path / "broken.ipynb"
    path.write_text('{"cells": [ unfinished')
    outcome = parse_file(path)
    assert ok_text(outcome) == '{"cells": [ unfinished'
    assert outcome.warnings == ["the notebook is not valid JSON; indexed as plain text"]
