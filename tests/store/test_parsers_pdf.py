"""parse_file on generated PDFs: page numbers, passwords, scans, forms, damage."""

from __future__ import annotations

from pathlib import Path

import pytest

from bastion.store.parsers import ParseOutcome, parse_file

from .document_factory import (
    encrypt_pdf,
    write_pdf,
    write_pdf_form,
)

# -- PDF -----------------------------------------------------------------------------------------


@pytest.fixture
def three_page_pdf(tmp_path: Path) -> Path:
    return write_pdf(
        tmp_path / "report.pdf",
        ["Alpha on page one", "Bravo on page two", "Charlie on page three"],
        title="The report",
    )


def test_pdf_pages_are_numbered_from_one(three_page_pdf: Path) -> None:
    outcome = parse_file(three_page_pdf)
    assert outcome.status == "ok"
    assert outcome.document is not None
    assert [(page.page, page.text) for page in outcome.document.pages] == [
        (1, "Alpha on page one"),
        (2, "Bravo on page two"),
        (3, "Charlie on page three"),
    ]
    assert outcome.document.kind == "pdf"
    assert outcome.document.title == "The report"


def test_time_budget_keeps_the_pages_read_so_far(three_page_pdf: Path) -> None:
    outcome = parse_file(three_page_pdf, time_budget_s=0)
    assert outcome.document is not None
    assert [page.page for page in outcome.document.pages] == [1]
    assert any("parsing stopped at the time limit (0 s)" in w for w in outcome.warnings)


def test_pdf_with_user_password_is_skipped(three_page_pdf: Path, tmp_path: Path) -> None:
    locked = encrypt_pdf(three_page_pdf, tmp_path / "locked.pdf", user_password="secret")
    assert parse_file(locked) == ParseOutcome(
        status="skipped", reason="encrypted (password-protected)"
    )


@pytest.mark.parametrize("algorithm", ["RC4-128", "AES-128", "AES-256"])
def test_pdf_with_empty_user_password_is_decrypted(
    three_page_pdf: Path, tmp_path: Path, algorithm: str
) -> None:
    restricted = encrypt_pdf(
        three_page_pdf, tmp_path / "restricted.pdf", user_password="", algorithm=algorithm
    )
    outcome = parse_file(restricted)
    assert outcome.document is not None, outcome.reason
    assert [page.text for page in outcome.document.pages][1] == "Bravo on page two"


def test_pdf_without_text_layer_is_skipped_as_scanned(tmp_path: Path) -> None:
    scanned = write_pdf(tmp_path / "scan.pdf", ["", ""])
    outcome = parse_file(scanned)
    assert outcome.status == "skipped"
    assert outcome.reason.startswith("no text layer (scanned?)")


def test_pdf_with_some_blank_pages_keeps_the_numbers_and_warns(tmp_path: Path) -> None:
    mixed = write_pdf(tmp_path / "mixed.pdf", ["", "Text on page two"])
    outcome = parse_file(mixed)
    assert outcome.document is not None
    assert [(page.page, page.text) for page in outcome.document.pages] == [(2, "Text on page two")]
    assert any("1 of 2 pages have no text layer" in warning for warning in outcome.warnings)


def test_truncated_pdf_fails_or_keeps_what_is_readable(
    three_page_pdf: Path, tmp_path: Path
) -> None:
    data = three_page_pdf.read_bytes()
    broken = tmp_path / "truncated.pdf"
    broken.write_bytes(data[: len(data) // 3])
    outcome = parse_file(broken)
    # PDFium may rebuild the cross-reference table and recover early pages; either way the
    # outcome is stated, never an exception.
    assert outcome.status in ("failed", "skipped", "ok")
    if outcome.status != "ok":
        assert outcome.reason


def test_garbage_named_pdf_fails_with_a_reason(tmp_path: Path) -> None:
    path = tmp_path / "fake.pdf"
    path.write_bytes(b"this is not a pdf at all")
    outcome = parse_file(path)
    assert outcome == ParseOutcome(
        status="failed", reason="not a valid PDF (the file does not start with a PDF header)"
    )


def test_corrupt_pdf_body_fails_with_a_reason(tmp_path: Path) -> None:
    path = tmp_path / "corrupt.pdf"
    path.write_bytes(b"%PDF-1.7\n" + bytes(range(256)) * 40 + b"\n%%EOF")
    outcome = parse_file(path)
    assert outcome.status in ("failed", "skipped")
    assert outcome.reason and "Error" not in outcome.reason.split()[0]


def test_pdf_form_answers_follow_the_text_of_their_page(tmp_path: Path) -> None:
    outcome = parse_file(write_pdf_form(tmp_path / "permit.pdf"))
    assert outcome.status == "ok" and outcome.document is not None
    assert [(page.page, page.text) for page in outcome.document.pages] == [
        (1, "Application for a mooring permit\n\n"
            "Applicant name: Zephyrine Quayle\ninsured: Yes\nhull: catamaran"),
        (2, "Berth details\n\nharbour: Valparaiso\nseason: winter"),
    ]


def test_pdf_named_txt_is_parsed_as_pdf(three_page_pdf: Path, tmp_path: Path) -> None:
    renamed = tmp_path / "report.txt"
    renamed.write_bytes(three_page_pdf.read_bytes())
    outcome = parse_file(renamed)
    assert outcome.document is not None and outcome.document.kind == "pdf"
