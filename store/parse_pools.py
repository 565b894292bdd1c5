"""What the indexing pipeline needs of a parse pool, and an in-process stand-in.

The application uses ``ParsePool`` (``parse_worker.py``: spawned, time- and memory-capped
workers). ``FunctionParsePool`` calls a parse function in the calling thread: for tests and
benchmarks over files Bastion wrote itself, never for a user's documents.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from .parsers.fsread import FileStat
from .parsers.types import ParseOutcome


@dataclass(frozen=True)
class ParseRequest:
    """One file to parse, and what the sync saw of it: the parser must find that very file
    (same device and inode) and read at most a margin past its size."""

    path: Path
    expected: FileStat | None = None


def as_request(item: Path | ParseRequest) -> ParseRequest:
    """``item`` as a ``ParseRequest`` (a bare path expects nothing in particular)."""
    return item if isinstance(item, ParseRequest) else ParseRequest(Path(item))


class ParsePoolLike(Protocol):
    """What the pipeline needs of ``ParsePool`` (spawned workers) or an in-process stand-in."""

    def parse_many(
        self, paths: Iterable[Path | ParseRequest]
    ) -> Iterator[tuple[Path, ParseOutcome]]:
        """Parse ``paths`` (pulled lazily), yielding ``(path, outcome)`` as they finish."""
        ...

    def close(self) -> None:
        """Stop the workers."""
        ...


class FunctionParsePool:
    """A parse pool that calls ``parse`` in the calling thread (tests and stand-ins only)."""

    def __init__(self, parse: Callable[[Path], ParseOutcome]) -> None:
        self._parse = parse

    def parse_many(
        self, paths: Iterable[Path | ParseRequest]
    ) -> Iterator[tuple[Path, ParseOutcome]]:
        """Parse each path in turn (the expected identity is for real parsers; not used here)."""
        for item in paths:
            path = as_request(item).path
            try:
                outcome = self._parse(path)
            except Exception as error:  # like a worker: a bad file costs that file only
                outcome = ParseOutcome("failed", f"The parser failed on it ({error}).")
            yield path, outcome

    def close(self) -> None:
        """Nothing to stop."""
