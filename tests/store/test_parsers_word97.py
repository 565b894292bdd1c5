"""Word 97-2003 documents (.doc): text from the piece table, read with olefile (#15: every file
accounted for; .doc was skipped as legacy Office)."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from bastion.store.parsers import parse_file
from bastion.store.parsers.detect import OLE_MAGIC, detect_kind

DATA = Path(__file__).parent / "data"
SIMPLE = DATA / "unstructured-simple.doc"
TABLE = DATA / "unstructured-fake-doc-emphasized-text.doc"
WORD97 = b"\xec\xa5"


def _text(path: Path) -> str:
    outcome = parse_file(path)
    assert outcome.status == "ok", outcome.reason
    assert outcome.document is not None and outcome.document.kind == "doc"
    return "\n".join(page.text for page in outcome.document.pages)


def _with_fib(tmp_path: Path, source: Path, ident: bytes | None = None, flag: int = 0) -> Path:
    """A copy of ``source`` with its File Information Block's identifier or flags changed.

    The WordDocument stream starts a 512-byte sector of the compound file with Word's identifier.
    """
    data = bytearray(source.read_bytes())
    starts = [i for i in range(512, len(data), 512) if data[i : i + 2] == WORD97]
    assert len(starts) == 1
    fib = starts[0]
    if ident is not None:
        data[fib : fib + 2] = ident
    data[fib + 0x0A] |= flag & 0xFF
    data[fib + 0x0B] |= flag >> 8
    path = tmp_path / source.name
    path.write_bytes(bytes(data))
    return path


def test_a_document_gives_its_paragraphs_in_order() -> None:
    text = _text(SIMPLE)
    assert text.startswith("These are a few of my favorite things:\n• Parrots\n")
    assert "This is my first thought. This is my second thought.\nThis is my third thought." in text
    assert text.endswith("DOYLESTOWN, PA 18901")


def test_tables_become_tab_separated_lines_and_fields_their_results() -> None:
    text = _text(TABLE)
    assert text.splitlines()[:2] == ["Header Col 1 \tHeader Col 2", "A bold italic bold-italic example\tA Link example"]
    assert "HYPERLINK" not in text and "github.com" not in text  # the field's code, not shown
    assert "I am a bold italic bold-italic text.\n\nI am a normal text." in text
    assert not any(ord(c) < 0x20 and c not in "\t\n" for c in text)


def test_encrypted_and_word95_documents_are_skipped_with_what_to_do(tmp_path: Path) -> None:
    encrypted = parse_file(_with_fib(tmp_path, SIMPLE, flag=0x0100))
    assert encrypted.status == "skipped"
    assert encrypted.reason.startswith("password-protected Word document; remove the password")
    old = parse_file(_with_fib(tmp_path, SIMPLE, ident=b"\xdc\xa5"))
    assert old.status == "skipped" and "save it in a current format" in old.reason


@pytest.mark.parametrize("cut", [600, 3000, 9000])
def test_a_damaged_document_fails_with_its_reason(tmp_path: Path, cut: int) -> None:
    path = tmp_path / "cut.doc"
    path.write_bytes(SIMPLE.read_bytes()[:cut])
    outcome = parse_file(path)
    assert outcome.status == "failed"
    assert outcome.reason.startswith("not a valid Word document")


def test_offsets_that_point_outside_their_streams_fail(tmp_path: Path) -> None:
    junk = tmp_path / "junk.doc"
    junk.write_bytes(OLE_MAGIC + bytes(range(256)) * 8)
    assert parse_file(junk).status == "failed"
    data = bytearray(SIMPLE.read_bytes())
    fib = next(i for i in range(512, len(data), 512) if data[i : i + 2] == WORD97)
    (csw,) = struct.unpack_from("<H", data, fib + 0x20)
    (cslw,) = struct.unpack_from("<H", data, fib + 0x22 + 2 * csw)
    clx = fib + 0x22 + 2 * csw + 2 + 4 * cslw + 2 + 8 * 33  # fcClx in FibRgFcLcb97
    for offset, value in ((clx, 0x7FFFFFF0), (clx + 4, 0xFFFFFFFF)):
        changed = bytearray(data)
        struct.pack_into("<I", changed, offset, value)
        path = tmp_path / f"clx-{offset}.doc"
        path.write_bytes(bytes(changed))
        outcome = parse_file(path)
        assert outcome.status == "failed"
        assert outcome.reason == "not a valid Word document (piece table outside the table stream)"


def test_only_an_ole_file_named_doc_is_read_as_word97() -> None:
    assert detect_kind(OLE_MAGIC + b"\x00" * 100, "doc") == "doc"
    assert detect_kind(OLE_MAGIC + b"\x00" * 100, "dot") == "doc"
    with pytest.raises(Exception, match="legacy Office file"):
        detect_kind(OLE_MAGIC + b"\x00" * 100, "pptx")  # an encrypted .pptx
