"""Turn one file into plain text with page spans, safely: ``parse_file``.

Every failure mode of a bad file ends in a ``ParseOutcome`` with a reason a person can read;
``parse_file`` never raises for a bad file. It runs in-process; ``bastion.store.parse_worker``
runs it in spawned worker processes with a timeout and a memory cap.
"""

from __future__ import annotations

import os
import time
import warnings as python_warnings
from dataclasses import replace
from pathlib import Path

from . import (  # noqa: F401 - importing a parser module registers it
    ebook,
    mail,
    markup,
    notebook,
    office,
    opendoc,
    outlook,
    pdf,
    powerpoint97,
    rtf,
    spreadsheets,
    text,
    word97,
)
from .detect import TEXT_KINDS, detect_kind, zip_kind
from .fsread import FileBytes, FileStat, open_regular_file, read_bytes, read_head
from .limits import DEFAULT_MAX_BYTES, DEFAULT_MAX_CHARS, PageCollector, ParseLimits
from .normalize import normalize_text
from .registry import ParseInput, parser_for, registered_kinds
from .types import PageText, ParsedDocument, ParseOutcome, ParseStatus
from .verdicts import FileBroken, FileSkipped

__all__ = [
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MAX_CHARS",
    "OUT_OF_MEMORY_REASON",
    "FileStat",
    "PageText",
    "ParseLimits",
    "ParseOutcome",
    "ParseStatus",
    "ParsedDocument",
    "parse_file",
    "registered_kinds",
]

OUT_OF_MEMORY_REASON = "ran out of memory while parsing this file"

# Kinds whose characters are the file's characters (no markup to strip).
_PLAIN_TEXT_KINDS = frozenset({"text", "markdown", "rst"})


def parse_file(
    path: Path,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_chars: int = DEFAULT_MAX_CHARS,
    limits: ParseLimits | None = None,
    time_budget_s: float | None = None,
    expected: FileStat | None = None,
) -> ParseOutcome:
    """Parse one file into text with page spans.

    Args:
        path: The file. Symlinks are not followed; FIFOs and devices are refused unopened.
        max_bytes: Larger files are skipped as too large.
        max_chars: At most this many characters are kept, with a warning when cut.
        limits: Full set of caps; ``max_bytes``/``max_chars`` override its fields.
        time_budget_s: Stop after this many seconds and keep the pages read so far, with a
            warning (ParsePool sets it below its hard timeout so slow, valid files are
            partly indexed rather than lost).
        expected: What the scan saw of the file: the open must find the same device and
            inode, and reads stop a margin past that size (``fsread.GROWTH_MARGIN``).

    Returns:
        ``ok`` with the document, or ``skipped``/``failed`` with a reason. Never raises for a
        bad file (only for programming errors such as a wrong argument type).
    """
    base = limits or ParseLimits()
    if max_bytes != DEFAULT_MAX_BYTES or limits is None:
        base = replace(base, max_bytes=max_bytes)
    if max_chars != DEFAULT_MAX_CHARS or limits is None:
        base = replace(base, max_chars=max_chars)
    if time_budget_s is not None:
        base = replace(base, time_budget_s=time_budget_s)
    try:
        return _parse(Path(path), base, expected)
    except FileSkipped as verdict:
        return ParseOutcome(status="skipped", reason=str(verdict))
    except FileBroken as verdict:
        return ParseOutcome(status="failed", reason=str(verdict))
    except MemoryError:
        return ParseOutcome(status="failed", reason=OUT_OF_MEMORY_REASON)
    except RecursionError:
        return ParseOutcome(
            status="failed", reason="the file is nested too deeply to read (damaged or hostile)"
        )
    except Exception as error:  # the contract: a bad file never raises
        detail = str(error).strip()[:160] or "no details given"
        return ParseOutcome(
            status="failed",
            reason=f"the parser could not read this file; it may be damaged ({detail})",
        )


def _parse(path: Path, limits: ParseLimits, expected: FileStat | None) -> ParseOutcome:
    started = time.monotonic()
    extension = _extension(path)
    fd, info = open_regular_file(path, limits.max_bytes, expected)
    try:
        head = read_head(fd)
        if not head:
            raise FileSkipped("empty file")
        kind = detect_kind(head, extension)
        bound = (expected or FileStat.of(info)).read_bound()
        if kind in _PLAIN_TEXT_KINDS:
            content = _read_plain_text(fd, info.st_size, limits.max_chars, bound)
        else:
            # Text needs at most 4 bytes per character: never read more than can be kept.
            limit = 4 * limits.max_chars + 4 if kind in TEXT_KINDS else limits.max_bytes
            content = read_bytes(fd, info.st_size, min(limit, bound))
    finally:
        os.close(fd)
    if kind == "zip":
        kind = zip_kind(content.data, extension)
    parser = parser_for(kind)
    if parser is None:
        raise FileSkipped(f"unsupported type (.{extension})" if extension else "unsupported type")
    source = ParseInput(
        path=path,
        data=content.data,
        extension=extension,
        limits=limits,
        collector=PageCollector(
            max_chars=limits.max_chars,
            deadline=None if limits.time_budget_s is None else started + limits.time_budget_s,
        ),
        truncated=content.truncated,
    )
    if content.truncated:
        source.collector.truncated = True
    with python_warnings.catch_warnings():
        # Libraries warn about quirks of real-world files; those are not failures.
        python_warnings.simplefilter("ignore")
        parser(source)
    return _finish(source, kind)


def _read_plain_text(fd: int, size: int, max_chars: int, bound: int) -> FileBytes:
    """The bytes of a plain text file that can hold ``max_chars`` characters, and no more.

    ASCII is one byte per character, so ``max_chars`` bytes suffice; only other text is read
    up to the 4 bytes per character UTF-8 may need. For a huge log that is a quarter of the
    memory.
    """
    first = read_bytes(fd, size, min(max_chars + 4, bound))
    if not first.truncated or (first.data.isascii() and b"\0" not in first.data):
        return first
    del first
    return read_bytes(fd, size, min(4 * max_chars + 4, bound))


def _finish(source: ParseInput, kind: str) -> ParseOutcome:
    pages: list[PageText] = []
    removed = 0
    for page in source.collector.pages:
        cleaned, count = normalize_text(page.text)
        removed += count
        if cleaned:
            pages.append(replace(page, text=cleaned))
    found_warnings = list(source.warnings)
    if removed:
        found_warnings.append(
            f"removed {removed:,} invisible formatting characters (zero-width or BiDi controls)"
        )
    if source.collector.truncated:
        found_warnings.append(
            f"only the first {source.limits.max_chars:,} characters are indexed; the rest was left out"
        )
    if source.collector.out_of_time:
        found_warnings.append(
            f"parsing stopped at the time limit ({source.limits.time_budget_s:g} s); only the "
            f"first part of the document is indexed ({len(pages)} pages or sections)"
        )
    if not pages:
        if source.collector.out_of_time:
            raise FileBroken(
                f"parsing took longer than {source.limits.time_budget_s:g} s before any text was found"
            )
        raise FileSkipped("no text found in the file")
    title = None
    if source.title:
        title, _ = normalize_text(" ".join(source.title.split()))
    document = ParsedDocument(pages=pages, title=title or None, kind=kind)
    return ParseOutcome(status="ok", document=document, warnings=found_warnings)


def _extension(path: Path) -> str:
    # Names need not decode: fsencode/fsdecode round-trips surrogate escapes untouched.
    suffix = os.fsdecode(path.suffix)
    return suffix[1:].lower() if suffix.startswith(".") else ""
