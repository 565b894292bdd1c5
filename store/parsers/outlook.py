"""Outlook messages (.msg) via olefile: headers, the text body, attachment names.

A ``.msg`` file is an OLE compound file. Each MAPI property of the message is a stream named
``__substg1.0_`` + its tag + its type: type ``001F`` is UTF-16 text, ``001E`` 8-bit text in the
message's code page (read as UTF-8, else cp1252), ``0102`` binary (the HTML body). Attachments are
storages ``__attach_version1.0_#…`` holding their own property streams, of which only the file
name is read; attachments themselves are not parsed, as for ``.eml``. (``extract-msg``, the usual
reader, is GPL; olefile is BSD and made for the container format.)
"""

from __future__ import annotations

import re
from typing import Any

from .compound import open_compound
from .html_text import html_to_text
from .registry import ParseInput, register

# MAPI property tags (MS-OXPROPS): what an .eml parse shows, in the same order.
_SUBJECT = "0037"
_SENDER_NAME = "0C1A"
_SENDER_ADDRESS = "0C1F"
_TO = "0E04"
_CC = "0E03"
_BODY = "1000"
_HTML_BODY = "1013"
_HEADERS = "007D"  # the transport headers a received message keeps (its Date is there)
_ATTACH_LONG_NAME = "3707"
_ATTACH_NAME = "3704"
# Attachment names of an encrypted message's body (S/MIME, PGP/MIME as Outlook saves them).
_ENCRYPTED = (".p7m", ".pgp-encrypted", ".asc")
_DATE = re.compile(r"^Date:[ \t]*(.+)$", re.MULTILINE | re.IGNORECASE)


@register("msg")
def parse_msg(source: ParseInput) -> None:
    """Headers (From/To/Cc/Subject/Date), then the plain body (or the HTML body as text), then
    the names of attachments."""
    with open_compound(source.data, "Outlook message") as ole:
        message = _Properties(ole, "")
        sender = message.text(_SENDER_NAME)
        address = message.text(_SENDER_ADDRESS)
        if address and "@" in address and address not in sender:
            sender = f"{sender} <{address}>" if sender else address
        date = _DATE.search(message.text(_HEADERS))
        subject = message.text(_SUBJECT)
        lines = [
            f"{name}: {value}"
            for name, value in (("From", sender), ("To", message.text(_TO)), ("Cc", message.text(_CC)),
                                ("Subject", subject), ("Date", date.group(1).strip() if date else ""))
            if value
        ]
        source.title = subject or None
        body = message.text(_BODY).strip()
        if not body:
            html = message.binary(_HTML_BODY)
            body = html_to_text(html.decode("utf-8", "replace")).text if html else ""
        attachments = [
            part.text(_ATTACH_LONG_NAME) or part.text(_ATTACH_NAME)
            for part in (_Properties(ole, storage) for storage in _attachment_storages(ole))
        ]
    parts = ["\n".join(lines), body]
    names = [name for name in attachments if name]
    if not body and any(name.lower().endswith(_ENCRYPTED) for name in names):
        source.warnings.append("the message is encrypted; only its headers are indexed")
    if names:
        parts.append("Attachments: " + ", ".join(names))
    source.collector.add("\n\n".join(part for part in parts if part))


class _Properties:
    """The property streams of the message (``storage`` "") or of one of its attachments."""

    def __init__(self, ole: Any, storage: str) -> None:
        self.ole, self.prefix = ole, f"{storage}/" if storage else ""

    def _read(self, name: str) -> bytes | None:
        path = f"{self.prefix}__substg1.0_{name}"
        if not self.ole.exists(path):
            return None
        data: bytes = self.ole.openstream(path).read()
        return data

    def text(self, tag: str) -> str:
        """A text property: the body and headers with their lines, others on one line."""
        wide = self._read(f"{tag}001F")
        if wide is not None:
            value = wide.decode("utf-16-le", "replace")
        else:
            narrow = self._read(f"{tag}001E")
            if narrow is None:
                return ""
            try:
                value = narrow.decode("utf-8")
            except UnicodeDecodeError:
                value = narrow.decode("cp1252", "replace")
        value = value.rstrip("\x00")
        if tag in (_BODY, _HEADERS):
            return value.replace("\r\n", "\n").strip()
        return " ".join(value.split())

    def binary(self, tag: str) -> bytes:
        return self._read(f"{tag}0102") or b""


def _attachment_storages(ole: Any) -> list[str]:
    """Names of the attachment storages at the top of the message, in order."""
    names = {
        entry[0]
        for entry in ole.listdir(streams=False, storages=True)
        if len(entry) == 1 and entry[0].startswith("__attach_version1.0_")
    }
    return sorted(names)
