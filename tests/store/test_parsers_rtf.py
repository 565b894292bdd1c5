"""RTF documents (#15: every file accounted for; .rtf was skipped as unsupported)."""

from __future__ import annotations

from pathlib import Path

from bastion.store.parsers import parse_file

LETTER = (
    r"{\rtf1\ansi\ansicpg1252\deff0{\fonttbl{\f0\fswiss Helvetica;}}"
    r"{\*\generator Word;}\f0\pard Harbour dues are \b due\b0  in March.\par "
    r"Caf\'e9 ledger, \u8364? 12.\par "
    r"\trowd\cellx2000\cellx4000 Quay\cell Fee\cell\row}"
)


def test_an_rtf_letter_gives_its_text(tmp_path: Path) -> None:
    path = tmp_path / "letter.rtf"
    path.write_bytes(LETTER.encode("ascii"))
    outcome = parse_file(path)
    assert outcome.status == "ok", outcome.reason
    assert outcome.document is not None and outcome.document.kind == "rtf"
    text = "\n".join(page.text for page in outcome.document.pages)
    assert "Harbour dues are due in March." in text
    assert "Café ledger, € 12." in text
    assert "Quay" in text and "Fee" in text
    assert "Helvetica" not in text and "Word" not in text, "font tables and generators stay out"


def test_a_file_named_rtf_that_is_not_rtf_fails_with_its_reason(tmp_path: Path) -> None:
    path = tmp_path / "fake.rtf"
    path.write_text("Just a note, saved with the wrong name.")
    outcome = parse_file(path)
    assert outcome.status == "failed"
    assert "not a valid RTF document" in outcome.reason
