"""PowerPoint 97–2003 presentations (.ppt, .pot) via olefile: one page per slide.

A ``.ppt`` is an OLE compound file whose ``PowerPoint Document`` stream is a tree of records
([MS-PPT] §2.3: an 8-byte header of version/instance, type and length; a version of 0xF marks
a container). Slide text is held in text atoms (``TextCharsAtom``, UTF-16, and
``TextBytesAtom``, 8-bit), either in the slide's own drawing (text boxes, and every text of files
written by newer tools) or, for placeholders in older files, in the document's slide list right
after the slide's ``SlidePersistAtom``. The slides are taken in the order of that list; each one's
container is found through the persist directory that the ``Current User`` stream leads to
(the last edit, then each edit before it). If that chain is damaged, the slide containers are
read in the order they are stored. A slide's speaker notes follow its text as "Notes: …", as for
``.pptx``: the slide's ``SlideAtom`` names its notes page by slide id, which the notes list maps
to a persist id. Masters and their "Click to edit…" prompts are left out.

As for ``.doc``, no maintained Python package reads ``.ppt``; olefile reads the container, and
every length read from the file is checked against the stream.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

from .compound import broken, open_compound
from .registry import ParseInput, register
from .verdicts import FileBroken, FileSkipped

_DOCUMENT = 0x03E8
_SLIDE = 0x03EE
_SLIDE_ATOM = 0x03EF
_NOTES = 0x03F0
_SLIDE_LIST = 0x0FF0
_SLIDE_PERSIST = 0x03F3
_SLIDES_LIST, _NOTES_LIST = 0, 2  # SlideListWithText instances
_TEXT_CHARS = 0x0FA0
_TEXT_BYTES = 0x0FA8
_USER_EDIT = 0x0FF5
_PERSIST_DIRECTORY = 0x1772
_MAX_DEPTH = 64
_MAX_EDITS = 10_000

_WHAT = "PowerPoint presentation"


@register("ppt")
def parse_ppt(source: ParseInput) -> None:
    """Each slide's text as a page, in the presentation's order."""
    with open_compound(source.data, _WHAT) as ole:
        if ole.exists("EncryptedSummary") or ole.exists("EncryptedPackage"):
            raise FileSkipped(
                "password-protected PowerPoint presentation; remove the password to index it"
            )
        if not ole.exists("PowerPoint Document"):
            raise FileBroken("not a valid PowerPoint presentation (no PowerPoint Document stream)")
        try:
            stream = ole.openstream("PowerPoint Document").read()
            user = ole.openstream("Current User").read() if ole.exists("Current User") else b""
        except OSError as error:
            raise broken(_WHAT, error) from None
    try:
        slides = _slides(stream, user)
    except (struct.error, IndexError, ValueError, RecursionError) as error:
        raise broken(_WHAT, error) from None
    for number, texts in enumerate(slides, start=1):
        if texts and not source.collector.add("\n".join(texts), page=number, label=f"slide {number}"):
            break


def _slides(stream: bytes, user: bytes) -> list[list[str]]:
    """Each slide's texts: its slide-list texts, those of its drawing, then its notes."""
    document = next((r for r in _records(stream, 0, len(stream)) if r[0] == _DOCUMENT), None)
    if document is None:
        raise ValueError("no Document record")
    persist = _persist_offsets(stream, user)
    slides = _listed(stream, document, _SLIDES_LIST)
    notes = {slide_id: (reference, texts)
             for reference, slide_id, texts in _listed(stream, document, _NOTES_LIST)}
    pages: list[list[str]] = []
    for reference, _, listed in slides:
        offset = persist.get(reference)
        texts = listed + _texts_of_container(stream, offset, _SLIDE)
        notes_id = _notes_id(stream, offset)
        if notes_id and notes_id in notes:
            notes_reference, notes_listed = notes[notes_id]
            spoken = notes_listed + _texts_of_container(stream, persist.get(notes_reference), _NOTES)
            if spoken:
                texts.append("Notes: " + "\n".join(spoken))
        pages.append(texts)
    if not any(pages):  # no usable slide list: the slides as stored
        pages = [
            _texts_of_container(stream, start - 8, _SLIDE)
            for record_type, _, start, _ in _records(stream, 0, len(stream))
            if record_type == _SLIDE
        ]
    return pages


def _listed(stream: bytes, document: tuple[int, int, int, int],
            instance: int) -> list[tuple[int, int, list[str]]]:
    """A slide list's entries: (persist id, slide id, the texts listed after it).

    Older files keep placeholder texts here rather than in the slide's drawing."""
    entries: list[tuple[int, int, list[str]]] = []
    for record_type, record_instance, start, end in _records(stream, document[2], document[3]):
        if record_type != _SLIDE_LIST or record_instance != instance:
            continue
        for inner_type, _, body, body_end in _records(stream, start, end):
            if inner_type == _SLIDE_PERSIST and body_end - body >= 16:
                reference, _, _, slide_id = struct.unpack_from("<IIII", stream, body)
                entries.append((reference, slide_id, []))
            elif inner_type in (_TEXT_CHARS, _TEXT_BYTES) and entries:
                text = _text(stream, inner_type, body, body_end)
                if text:
                    entries[-1][2].append(text)
    return entries


def _notes_id(stream: bytes, offset: int | None) -> int:
    """The slide id of the notes page of the slide at ``offset`` (0: none)."""
    body = _body(stream, offset, _SLIDE)
    if body is None:
        return 0
    for inner_type, _, start, end in _records(stream, *body):
        if inner_type == _SLIDE_ATOM and end - start >= 20:
            return int(struct.unpack_from("<I", stream, start + 16)[0])  # SlideAtom.notesIdRef
    return 0


def _texts_of_container(stream: bytes, offset: int | None, kind: int) -> list[str]:
    """The text atoms in the ``kind`` record at ``offset`` and below it, in order."""
    body = _body(stream, offset, kind)
    if body is None:
        return []
    texts: list[str] = []
    for record_type, _, start, end in _walk(stream, *body):
        if record_type in (_TEXT_CHARS, _TEXT_BYTES):
            text = _text(stream, record_type, start, end)
            if text:
                texts.append(text)
    return texts


def _body(stream: bytes, offset: int | None, kind: int) -> tuple[int, int] | None:
    """Where the body of the ``kind`` record at ``offset`` lies (None: no such record there)."""
    if offset is None or not 0 <= offset <= len(stream) - 8:
        return None
    _, record_type, length = struct.unpack_from("<HHI", stream, offset)
    if record_type != kind:
        return None
    return offset + 8, min(offset + 8 + length, len(stream))


def _text(stream: bytes, record_type: int, start: int, end: int) -> str:
    raw = stream[start:end]
    text = raw.decode("utf-16-le", "replace") if record_type == _TEXT_CHARS else raw.decode("cp1252", "replace")
    # Paragraph and line breaks are \r and \x0b; a lone "*" is a slide-number placeholder.
    text = text.replace("\r", "\n").replace("\x0b", "\n").strip()
    return "" if text == "*" else text


def _persist_offsets(stream: bytes, user: bytes) -> dict[int, int]:
    """Persist id -> offset of its record, newest edit first, from the Current User stream."""
    offsets: dict[int, int] = {}
    if len(user) < 20:
        return offsets
    (edit,) = struct.unpack_from("<I", user, 16)  # CurrentUserAtom.offsetToCurrentEdit
    seen: set[int] = set()
    while edit and edit not in seen and len(seen) < _MAX_EDITS and edit + 28 <= len(stream):
        seen.add(edit)
        record_type = struct.unpack_from("<H", stream, edit + 2)[0]
        if record_type != _USER_EDIT:
            break
        last_edit, directory = struct.unpack_from("<II", stream, edit + 16)
        if directory + 8 <= len(stream):
            _, kind, length = struct.unpack_from("<HHI", stream, directory)
            if kind == _PERSIST_DIRECTORY:
                at, end = directory + 8, min(directory + 8 + length, len(stream))
                while at + 4 <= end:
                    (entry,) = struct.unpack_from("<I", stream, at)
                    first, count = entry & 0xFFFFF, entry >> 20
                    at += 4
                    for n in range(count):
                        if at + 4 > end:
                            break
                        offsets.setdefault(first + n, struct.unpack_from("<I", stream, at)[0])
                        at += 4
        edit = last_edit
    return offsets


def _records(stream: bytes, start: int, end: int) -> Iterator[tuple[int, int, int, int]]:
    """The records directly in [start, end): (type, instance, body start, body end)."""
    at = start
    while at + 8 <= end:
        version_instance, record_type, length = struct.unpack_from("<HHI", stream, at)
        body = at + 8
        body_end = body + length
        if body_end > end:
            return  # a damaged length: what follows cannot be trusted
        yield record_type, version_instance >> 4, body, body_end
        at = body_end


def _walk(stream: bytes, start: int, end: int, depth: int = 0) -> Iterator[tuple[int, int, int, int]]:
    """Every record under [start, end), depth first, masters' and notes' subtrees included."""
    if depth > _MAX_DEPTH:
        return
    for record in _records(stream, start, end):
        yield record
        version = struct.unpack_from("<H", stream, record[2] - 8)[0] & 0xF
        if version == 0xF:
            yield from _walk(stream, record[2], record[3], depth + 1)
