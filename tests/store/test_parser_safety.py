"""parse_file against hostile documents and filesystem tricks (SECURITY.md "Documents")."""

from __future__ import annotations

import codecs
import errno
import os
import zipfile
from pathlib import Path

import pytest

from bastion.store.parsers import ParseOutcome, parse_file

from .document_factory import docx_with_document_xml, write_docx, write_zip, zip_bomb_docx

BILLION_LAUGHS = (
    b'<?xml version="1.0"?>\n<!DOCTYPE lolz [\n <!ENTITY lol "lol">\n'
    + b"".join(
        f' <!ENTITY lol{i} "{("&lol" + (str(i - 1) if i > 1 else "") + ";") * 10}">\n'.encode()
        for i in range(1, 10)
    )
    + b"]>\n<w:document><w:body><w:p><w:r><w:t>&lol9;</w:t></w:r></w:p></w:body></w:document>"
)
XXE = (
    b'<?xml version="1.0"?><!DOCTYPE d [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
    b"<w:document><w:body><w:p><w:r><w:t>&x;</w:t></w:r></w:p></w:body></w:document>"
)


# -- zip-based documents -------------------------------------------------------------------------


def test_docx_that_is_not_a_zip_fails(tmp_path: Path) -> None:
    path = tmp_path / "fake.docx"
    path.write_text("I am plain text pretending to be Word.")
    assert parse_file(path) == ParseOutcome(
        status="failed", reason="not a valid .docx (not a zip archive)"
    )


def test_ole_file_named_docx_is_skipped_as_protected_or_legacy(tmp_path: Path) -> None:
    path = tmp_path / "protected.docx"
    path.write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\0" * 4000)
    outcome = parse_file(path)
    assert outcome.status == "skipped"
    assert outcome.reason.startswith("password-protected or legacy Office file (.docx)")


def test_docx_zip_bomb_is_refused_before_inflating(tmp_path: Path) -> None:
    path = zip_bomb_docx(tmp_path / "bomb.docx", megabytes=200)
    assert path.stat().st_size < 1024 * 1024
    outcome = parse_file(path)
    assert outcome.status == "failed"
    assert outcome.reason.startswith("looks like a zip bomb")


def test_zip_ratio_over_100_is_refused_even_under_the_size_cap(tmp_path: Path) -> None:
    path = zip_bomb_docx(tmp_path / "small-bomb.docx", megabytes=20)
    outcome = parse_file(path)
    assert outcome.status == "failed"
    assert outcome.reason.startswith("looks like a zip bomb: it expands")


def test_zip_with_too_many_members_is_refused(tmp_path: Path) -> None:
    members = {f"word/part{i}.xml": b"<a/>" for i in range(10_001)}
    members["word/document.xml"] = b"<w:document/>"
    path = write_zip(tmp_path / "many.docx", members, compression=zipfile.ZIP_STORED)
    outcome = parse_file(path)
    assert outcome.status == "failed"
    assert "10,002 files inside" in outcome.reason


@pytest.mark.parametrize("payload", [BILLION_LAUGHS, XXE], ids=["billion-laughs", "xxe"])
def test_docx_with_doctype_is_refused(tmp_path: Path, payload: bytes) -> None:
    outcome = parse_file(docx_with_document_xml(tmp_path / "evil.docx", payload))
    assert outcome.status == "failed"
    assert outcome.reason.startswith("refused: 'word/document.xml' contains an XML document type")
    assert "lollol" not in outcome.reason


def test_doctype_hidden_in_utf16_xml_is_found(tmp_path: Path) -> None:
    payload = codecs.BOM_UTF16_LE + BILLION_LAUGHS.decode().replace(
        'version="1.0"', 'version="1.0" encoding="UTF-16"'
    ).encode("utf-16-le")
    outcome = parse_file(docx_with_document_xml(tmp_path / "wide.docx", payload))
    assert outcome.status == "failed"
    assert "document type declaration" in outcome.reason


def test_xml_in_utf7_is_refused(tmp_path: Path) -> None:
    payload = b'<?xml version="1.0" encoding="UTF-7"?>+ADw-!DOCTYPE x+AD4-<w:document/>'
    outcome = parse_file(docx_with_document_xml(tmp_path / "utf7.docx", payload))
    assert outcome.status == "failed"
    assert "unexpected encoding (UTF-7)" in outcome.reason


def test_real_docx_with_doctype_injected_is_refused(tmp_path: Path) -> None:
    clean = write_docx(tmp_path / "clean.docx")
    evil = tmp_path / "injected.docx"
    with (
        zipfile.ZipFile(clean) as source,
        zipfile.ZipFile(evil, "w", zipfile.ZIP_DEFLATED) as target,
    ):
        for item in source.infolist():
            data = source.read(item)
            if item.filename == "word/document.xml":
                data = data.replace(b"?>", b'?><!DOCTYPE w [<!ENTITY e "boom">]>', 1)
            target.writestr(item, data)
    assert parse_file(evil).status == "failed"
    assert parse_file(clean).status == "ok"


def test_binary_member_with_embedded_doctype_is_not_a_false_alarm(tmp_path: Path) -> None:
    # Mac printer settings in real decks: a binary header, then a plist with a DOCTYPE.
    clean = write_docx(tmp_path / "clean.docx")
    mac = tmp_path / "mac.docx"
    with (
        zipfile.ZipFile(clean) as source,
        zipfile.ZipFile(mac, "w", zipfile.ZIP_DEFLATED) as target,
    ):
        for item in source.infolist():
            target.writestr(item, source.read(item))
        target.writestr(
            "word/printerSettings/printerSettings1.bin",
            b"\x02\x00\x00\x00<?xml?><!DOCTYPE plist PUBLIC '-//Apple//DTD PLIST 1.0//EN'>",
        )
    assert parse_file(mac).status == "ok"


def test_zip_without_office_parts_named_docx_fails(tmp_path: Path) -> None:
    path = write_zip(tmp_path / "odd.docx", {"hello.txt": b"hi"})
    assert parse_file(path) == ParseOutcome(
        status="failed", reason="not a valid .docx (a zip archive without the parts a .docx has)"
    )


def test_plain_zip_archive_is_unsupported(tmp_path: Path) -> None:
    path = write_zip(tmp_path / "bundle.zip", {"a.txt": b"hi"})
    assert parse_file(path) == ParseOutcome(status="skipped", reason="unsupported type (.zip)")


def test_truncated_docx_fails_with_a_reason(tmp_path: Path) -> None:
    data = write_docx(tmp_path / "whole.docx").read_bytes()
    path = tmp_path / "cut.docx"
    path.write_bytes(data[: len(data) // 2])
    outcome = parse_file(path)
    assert outcome.status == "failed"
    assert outcome.reason == "not a valid .docx (damaged zip archive)"


def test_encrypted_zip_member_is_skipped(tmp_path: Path) -> None:
    data = bytearray(write_docx(tmp_path / "plain.docx").read_bytes())
    # Set the "encrypted" flag bit in every local and central header.
    for signature, offset in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        start = 0
        while (start := data.find(signature, start)) != -1:
            data[start + offset] |= 0x1
            start += 4
    path = tmp_path / "locked.docx"
    path.write_bytes(bytes(data))
    assert parse_file(path) == ParseOutcome(
        status="skipped", reason="encrypted (password-protected)"
    )


# -- filesystem ----------------------------------------------------------------------------------


def test_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.txt"
    os.mkfifo(fifo)
    assert parse_file(fifo) == ParseOutcome(
        status="skipped", reason="not a regular file (a named pipe (FIFO))"
    )


def test_device_is_refused(tmp_path: Path) -> None:
    outcome = parse_file(Path("/dev/zero"))
    assert (outcome.status, outcome.reason) == ("skipped", "not a regular file (a device)")


def test_folder_is_refused(tmp_path: Path) -> None:
    assert parse_file(tmp_path).reason == "not a regular file (a folder)"


def test_symlink_is_not_followed(tmp_path: Path) -> None:
    target = tmp_path / "secret.txt"
    target.write_text("outside the root")
    link = tmp_path / "link.txt"
    link.symlink_to(target)
    assert parse_file(link) == ParseOutcome(
        status="skipped", reason="symbolic link (links are not followed)"
    )


def test_symlink_loop_is_refused(tmp_path: Path) -> None:
    loop = tmp_path / "loop.txt"
    loop.symlink_to(loop)
    assert parse_file(loop).status == "skipped"


def test_deleted_file_fails_with_a_reason(tmp_path: Path) -> None:
    path = tmp_path / "gone.txt"
    path.write_text("soon gone")
    path.unlink()
    assert parse_file(path) == ParseOutcome(
        status="failed", reason="file disappeared before it could be read"
    )


def test_file_deleted_between_check_and_open(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bastion.store.parsers import fsread

    path = tmp_path / "race.txt"
    path.write_text("here at scan time")
    real_check = fsread.check_regular_file

    def check_then_delete(checked: Path, max_bytes: int) -> os.stat_result:
        info = real_check(checked, max_bytes)
        checked.unlink()
        return info

    monkeypatch.setattr(fsread, "check_regular_file", check_then_delete)
    assert parse_file(path).reason == "file disappeared before it could be read"


def test_symlink_swapped_in_after_the_check_is_not_followed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bastion.store.parsers import fsread

    path = tmp_path / "swap.txt"
    path.write_text("innocent")
    secret = tmp_path / "secret.txt"
    secret.write_text("secret")
    real_check = fsread.check_regular_file

    def check_then_swap(checked: Path, max_bytes: int) -> os.stat_result:
        info = real_check(checked, max_bytes)
        checked.unlink()
        checked.symlink_to(secret)
        return info

    monkeypatch.setattr(fsread, "check_regular_file", check_then_swap)
    outcome = parse_file(path)
    assert outcome.status == "skipped"
    assert outcome.reason == "symbolic link (links are not followed)"


def test_permission_denied_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Root bypasses file modes, so the refusal is simulated at the open call.
    from bastion.store.parsers import fsread

    path = tmp_path / "private.txt"
    path.write_text("not for you")
    real_open = os.open

    def deny(file: object, flags: int, *args: object, **kwargs: object) -> int:
        if Path(str(file)) == path:
            raise PermissionError(errno.EACCES, "Permission denied", str(file))
        return real_open(file, flags, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(fsread.os, "open", deny)
    outcome = parse_file(path)
    assert outcome.status == "failed"
    assert outcome.reason.startswith("permission denied: 'private.txt'")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_permission_denied_for_real(tmp_path: Path) -> None:
    path = tmp_path / "private.txt"
    path.write_text("not for you")
    path.chmod(0)
    assert parse_file(path).reason.startswith("permission denied")


def test_non_utf8_file_name(tmp_path: Path) -> None:
    name = os.fsdecode(b"caf\xe9-\xff.txt")
    path = tmp_path / name
    path.write_text("named oddly")
    outcome = parse_file(path)
    assert outcome.document is not None and outcome.document.pages[0].text == "named oddly"


def test_very_long_file_name(tmp_path: Path) -> None:
    long_ok = tmp_path / ("n" * 251 + ".txt")
    long_ok.write_text("long name")
    assert parse_file(long_ok).status == "ok"
    too_long = tmp_path / ("n" * 300 + ".txt")
    assert parse_file(too_long) == ParseOutcome(
        status="failed", reason="the file name is too long for the operating system to open"
    )
