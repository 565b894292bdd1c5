"""Outlook messages (.msg): headers, body and attachment names, read with olefile (#15: every
file accounted for; .msg was skipped as unsupported)."""

from __future__ import annotations

from pathlib import Path

from bastion.store.parsers import parse_file
from bastion.store.parsers.detect import OLE_MAGIC, detect_kind

DATA = Path(__file__).parent / "data"
MESSAGE = DATA / "unstructured-fake-email-attachment.msg"


def _text(path: Path) -> str:
    outcome = parse_file(path)
    assert outcome.status == "ok", outcome.reason
    assert outcome.document is not None
    return "\n".join(page.text for page in outcome.document.pages)


def test_a_message_gives_its_headers_body_and_attachment_names(tmp_path: Path) -> None:
    outcome = parse_file(MESSAGE)
    assert outcome.status == "ok" and outcome.document is not None
    assert outcome.document.kind == "msg"
    assert outcome.document.title == "Fake email with attachment"
    text = _text(MESSAGE)
    assert "From: Mallori Harrell <mallori@unstructured.io>" in text
    assert "Subject: Fake email with attachment" in text
    assert "Date: Fri, 23 Dec 2022 12:08:48 -0600" in text
    assert "Here's the attachments!" in text and "Lots of whitespace" in text
    assert text.rstrip().endswith("Attachments: fake-attachment.txt")


def test_a_damaged_message_fails_with_its_reason(tmp_path: Path) -> None:
    cut = tmp_path / "cut.msg"
    cut.write_bytes(MESSAGE.read_bytes()[:3000])
    outcome = parse_file(cut)
    assert outcome.status == "failed"
    assert outcome.reason.startswith("not a valid Outlook message")
    junk = tmp_path / "junk.msg"
    junk.write_bytes(OLE_MAGIC + bytes(range(256)) * 8)
    assert parse_file(junk).status == "failed"


def test_only_an_ole_file_named_msg_is_read_as_a_message() -> None:
    assert detect_kind(OLE_MAGIC + b"\x00" * 100, "msg") == "msg"
    assert detect_kind(b"Subject: plain text saved as .msg\n\nHello.\n", "msg") == "text"
