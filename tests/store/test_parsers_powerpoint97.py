"""PowerPoint 97-2003 presentations (.ppt): one page per slide, read with olefile (#15: every file
accounted for; .ppt was skipped as legacy Office)."""

from __future__ import annotations

import struct
from pathlib import Path

import olefile
import pytest

from bastion.store.parsers import parse_file
from bastion.store.parsers.detect import OLE_MAGIC, detect_kind
from bastion.store.parsers.powerpoint97 import _slides

DATA = Path(__file__).parent / "data"
DECK = DATA / "unstructured-fake-power-point.ppt"
SLIDE_TEXT = [
    "Adding a Bullet Slide",
    "Find the bullet slide layout\nUse _TextFrame.text for first bullet\n"
    "Use _TextFrame.add_paragraph() for subsequent bullets",
    "Here is a lot of text!",
    "Here is some text in a text box!",
]


def test_each_slide_is_a_page_without_the_masters_prompts() -> None:
    outcome = parse_file(DECK)
    assert outcome.status == "ok", outcome.reason
    assert outcome.document is not None and outcome.document.kind == "ppt"
    pages = outcome.document.pages
    assert [(p.page, p.label) for p in pages] == [(1, "slide 1")]
    assert pages[0].text == "\n".join(SLIDE_TEXT)
    assert "Click to edit" not in pages[0].text


def test_slides_are_found_through_the_persist_directory_or_as_stored() -> None:
    with olefile.OleFileIO(str(DECK)) as ole:
        stream = ole.openstream("PowerPoint Document").read()
        user = ole.openstream("Current User").read()
    # The slide persist atom's id leads to the slide's container: title, body, then the text box.
    assert _slides(stream, user) == [[SLIDE_TEXT[0], "\n".join(SLIDE_TEXT[1:3]), SLIDE_TEXT[3]]]
    # No Current User stream (or a damaged one): the slide containers in stored order.
    assert ["\n".join(t) for t in _slides(stream, b"")] == ["\n".join(SLIDE_TEXT)]
    assert ["\n".join(t) for t in _slides(stream, b"\xff" * 44)] == ["\n".join(SLIDE_TEXT)]


def test_an_encrypted_presentation_is_skipped_with_what_to_do(tmp_path: Path) -> None:
    # Rename the empty "Pictures" stream to the one an encrypted presentation has.
    data = DECK.read_bytes()
    old, new = "Pictures".encode("utf-16-le"), "EncryptedSummary".encode("utf-16-le")
    at = data.index(old + b"\x00\x00")
    entry = data[:at] + (new + b"\x00\x00").ljust(64, b"\x00") + struct.pack("<H", len(new) + 2)
    path = tmp_path / "locked.ppt"
    path.write_bytes(entry + data[at + 66 :])
    outcome = parse_file(path)
    assert outcome.status == "skipped"
    assert outcome.reason.startswith("password-protected PowerPoint presentation; remove the password")


@pytest.mark.parametrize("cut", [700, 5000, 12000])
def test_a_damaged_presentation_fails_with_its_reason(tmp_path: Path, cut: int) -> None:
    path = tmp_path / "cut.ppt"
    path.write_bytes(DECK.read_bytes()[:cut])
    outcome = parse_file(path)
    assert outcome.status == "failed"
    assert outcome.reason.startswith("not a valid PowerPoint presentation")


def test_records_with_lengths_past_their_stream_end_the_walk() -> None:
    with olefile.OleFileIO(str(DECK)) as ole:
        stream = bytearray(ole.openstream("PowerPoint Document").read())
    struct.pack_into("<I", stream, 4, 0xFFFFFFF0)  # the first record claims 4 GB
    with pytest.raises(ValueError, match="no Document record"):
        _slides(bytes(stream), b"")


def test_only_an_ole_file_named_ppt_is_read_as_powerpoint97() -> None:
    for extension in ("ppt", "pot", "pps"):
        assert detect_kind(OLE_MAGIC + b"\x00" * 100, extension) == "ppt"
