"""Parse functions that misbehave on purpose, for ParsePool tests (run inside the workers).

``by_name`` dispatches on the file name so one run can mix hostile and normal files.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

from bastion.store.parsers import PageText, ParsedDocument, ParseOutcome, parse_file


def hang(path: Path, **limits: Any) -> ParseOutcome:
    """Never returns (until the pool kills the worker)."""
    while True:
        time.sleep(3600)


def crash(path: Path, **limits: Any) -> ParseOutcome:
    """Dies the way a C library does on a bad input."""
    os.abort()


def oom(path: Path, **limits: Any) -> ParseOutcome:
    """Allocates far beyond any sane memory cap."""
    hog = [bytearray(256 * 1024 * 1024) for _ in range(64)]
    return ParseOutcome(status="ok", reason=str(len(hog)))


def raises(path: Path, **limits: Any) -> ParseOutcome:
    """A parser bug that escapes as an exception."""
    raise RuntimeError("deliberate parser bug")


def modules(path: Path, **limits: Any) -> ParseOutcome:
    """Reports which heavy modules the worker has imported (spawn must stay cheap)."""
    heavy = sorted(
        name
        for name in ("torch", "transformers", "sentence_transformers", "PySide6", "llama_cpp")
        if name in sys.modules
    )
    text = " ".join(heavy) or "none"
    return ParseOutcome(status="ok", document=ParsedDocument(pages=[PageText(text)], kind="text"))


class RunsOnUnpickle:
    """Unpickling this calls ``os.mkdir(marker)``: the classic pickle payload, made harmless."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.mkdir, (self.marker,))


def compromised(path: Path, **limits: Any) -> ParseOutcome:
    """A worker taken over by its input: it writes a pickle payload to the pool's pipe.

    The payload would create ``<folder>/pwned`` in the pool's process if the pool unpickled it.
    """
    import gc
    from multiprocessing.connection import Connection

    pipe = next(o for o in gc.get_objects() if isinstance(o, Connection) and not o.closed)
    pipe.send(RunsOnUnpickle(str(path.parent / "pwned")))
    return ParseOutcome(status="ok", document=ParsedDocument(pages=[PageText("looks fine")]))


def by_name(path: Path, **limits: Any) -> ParseOutcome:
    """Hang, crash or exhaust memory when the file name says so; parse normally otherwise."""
    name = path.name
    if name.startswith("hang"):
        return hang(path)
    if name.startswith("crash"):
        return crash(path)
    if name.startswith("oom"):
        return oom(path)
    return parse_file(path, **limits)


def surrogates(path: Path, **limits: Any) -> ParseOutcome:
    """Text with CJK, an emoji and a lone surrogate (as undecodable file names give)."""
    text = "東京 \U0001f600 caf\udce9"
    return ParseOutcome(status="ok", document=ParsedDocument(pages=[PageText(text)], title=text))
