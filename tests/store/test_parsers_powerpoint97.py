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


def record(kind: int, body: bytes, instance: int = 0) -> bytes:
    """A record: version 0xF (a container) when ``body`` is made of records, else 0."""
    container = kind in (0x03E8, 0x03EE, 0x03F0, 0x0FF0)
    return struct.pack("<HHI", instance << 4 | (0xF if container else 0), kind, len(body)) + body


def chars(text: str) -> bytes:
    return record(0x0FA0, text.encode("utf-16-le"))


def persist_atom(reference: int, slide_id: int) -> bytes:
    return record(0x03F3, struct.pack("<IIIII", reference, 0, 0, slide_id, 0))


def deck_with_notes(notes_text: str | None, listed_note: str | None = None) -> tuple[bytes, bytes]:
    """A one-slide PowerPoint Document stream (and Current User stream) as PowerPoint 2003
    writes them: slide 256 names notes page 257 in its SlideAtom; the notes list maps 257 to
    persist id 2, the slide list maps 256 to persist id 1."""
    notes_list = persist_atom(2, 257) + (chars(listed_note) if listed_note else b"")
    document = record(0x03E8, record(0x0FF0, persist_atom(1, 256), instance=0)
                      + record(0x0FF0, notes_list, instance=2))
    slide_atom = record(0x03EF, struct.pack("<I8sIIHH", 0, b"\x00" * 8, 0x80000000, 257, 0, 0))
    slide = record(0x03EE, slide_atom + chars("Quarterly results") + chars("Revenue rose 4%"))
    notes_body = record(0x03F1, struct.pack("<iHH", 256, 0, 0))
    notes = record(0x03F0, notes_body + (chars(notes_text) if notes_text is not None else b""))
    slide_at = len(document)
    notes_at = slide_at + len(slide)
    directory_at = notes_at + len(notes)
    directory = record(0x1772, struct.pack("<III", 2 << 20 | 1, slide_at, notes_at))
    edit_at = directory_at + len(directory)
    edit = record(0x0FF5, struct.pack("<IHBBIIIIHH", 256, 0, 0, 3, 0, directory_at, 1, 2, 0, 0))
    stream = document + slide + notes + directory + edit
    user = struct.pack("<IIIII", 0, 0, 0, 0, edit_at)
    return stream, user


def test_a_slides_speaker_notes_follow_its_text() -> None:
    stream, user = deck_with_notes("Mention the Lisbon office.\rThen take questions.")
    assert _slides(stream, user) == [
        ["Quarterly results", "Revenue rose 4%", "Notes: Mention the Lisbon office.\nThen take questions."]
    ]
    # Older files keep the notes' placeholder text in the notes list, as for slides.
    stream, user = deck_with_notes(None, listed_note="From the notes list")
    assert _slides(stream, user)[0][-1] == "Notes: From the notes list"
    # A notes page with no text (as in the real deck above) adds nothing.
    stream, user = deck_with_notes(None)
    assert _slides(stream, user) == [["Quarterly results", "Revenue rose 4%"]]


def test_a_notes_reference_that_leads_nowhere_adds_nothing() -> None:
    stream, user = deck_with_notes("Hidden")
    # The slide names notes page 999, which the notes list does not have.
    damaged = stream.replace(struct.pack("<II", 0x80000000, 257), struct.pack("<II", 0x80000000, 999))
    assert damaged != stream
    assert _slides(damaged, user) == [["Quarterly results", "Revenue rose 4%"]]
    # The notes list maps the page to a persist id the directory does not have.
    damaged = stream.replace(struct.pack("<IIIII", 2, 0, 0, 257, 0), struct.pack("<IIIII", 7, 0, 0, 257, 0))
    assert damaged != stream
    assert _slides(damaged, user) == [["Quarterly results", "Revenue rose 4%"]]


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
