"""E-mail (.eml) via the standard library: headers, the text body, attachment names."""

from __future__ import annotations

import email
from email import policy
from email.message import EmailMessage, Message, MIMEPart

from .html_text import html_to_text
from .registry import ParseInput, register

_HEADERS = ("From", "To", "Cc", "Subject", "Date")


@register("eml")
def parse_eml(source: ParseInput) -> None:
    """Headers (From/To/Cc/Subject/Date), then the plain body (or the HTML body as text), then
    the names of attachments; attachments themselves are not parsed."""
    message = email.message_from_bytes(source.data, policy=policy.default)
    lines = []
    for name in _HEADERS:
        value = _header(message, name)
        if value:
            lines.append(f"{name}: {value}")
    subject = _header(message, "Subject")
    source.title = subject or None
    parts = ["\n".join(lines)]
    body = _body(message, source.warnings)
    if body:
        parts.append(body)
    attachments = _attachment_names(message)
    if attachments:
        parts.append("Attachments: " + ", ".join(attachments))
    source.collector.add("\n\n".join(part for part in parts if part))


def _header(message: Message, name: str) -> str:
    try:
        value = message.get(name)
    except (ValueError, TypeError, IndexError):  # malformed encoded words
        return ""
    return " ".join(str(value).split()) if value is not None else ""


def _body(message: Message, warnings: list[str]) -> str:
    if not isinstance(message, EmailMessage):
        return ""
    part = message.get_body(preferencelist=("plain", "html"))
    if part is None:
        return ""
    text = _content(part, warnings)
    if part.get_content_subtype() == "html":
        return html_to_text(text).text
    return text.strip()


def _content(part: MIMEPart, warnings: list[str]) -> str:
    try:
        content = part.get_content()
    except (LookupError, UnicodeError, ValueError, AssertionError):
        # Unknown or lying charset: decode the raw payload leniently.
        payload = part.get_payload(decode=True)
        warnings.append(
            "the mail body's character set is unknown; decoded as UTF-8 with replacements"
        )
        return payload.decode("utf-8", "replace") if isinstance(payload, bytes) else ""
    if isinstance(content, bytes):
        return content.decode("utf-8", "replace")
    return str(content)


def _attachment_names(message: Message) -> list[str]:
    if not isinstance(message, EmailMessage):
        return []
    names = []
    for part in message.iter_attachments():
        try:
            filename = part.get_filename()
        except (ValueError, TypeError, IndexError):
            filename = None
        names.append(
            " ".join(str(filename).split()) if filename else f"unnamed ({part.get_content_type()})"
        )
    return names
