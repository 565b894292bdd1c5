"""What the indexing pipeline needs of a parse pool, and an in-process stand-in.

The application uses ``ParsePool`` (``parse_worker.py``: spawned, time- and memory-capped
workers). ``FunctionParsePool`` calls a parse function in the calling thread: for tests and
benchmarks over files Bastion wrote itself, never for a user's documents.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Protocol

from .parsers.types import ParseOutcome


class ParsePoolLike(Protocol):
    """What the pipeline needs of ``ParsePool`` (spawned workers) or an in-process stand-in."""

    def parse_many(self, paths: Iterable[Path]) -> Iterator[tuple[Path, ParseOutcome]]:
        """Parse ``paths`` (pulled lazily), yielding results as they finish."""
        ...

    def close(self) -> None:
        """Stop the workers."""
        ...


class FunctionParsePool:
    """A parse pool that calls ``parse`` in the calling thread (tests and stand-ins only)."""

    def __init__(self, parse: Callable[[Path], ParseOutcome]) -> None:
        self._parse = parse

    def parse_many(self, paths: Iterable[Path]) -> Iterator[tuple[Path, ParseOutcome]]:
        """Parse each path in turn."""
        for path in paths:
            try:
                outcome = self._parse(path)
            except Exception as error:  # like a worker: a bad file costs that file only
                outcome = ParseOutcome("failed", f"The parser failed on it ({error}).")
            yield path, outcome

    def close(self) -> None:
        """Nothing to stop."""
