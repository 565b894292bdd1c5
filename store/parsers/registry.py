"""The dispatch table from a document kind ("pdf", "docx", ...) to the function that parses it.

Parser modules register themselves with ``@register("kind")``, the way llama-cpp-python
registers chat formats; ``parse_file`` looks the kind up after detecting it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .limits import PageCollector, ParseLimits


@dataclass
class ParseInput:
    """Everything a parser gets: the bytes already read (safely) and where to put results.

    Attributes:
        path: The file, for messages only; parsers never reopen it.
        data: The file's bytes (for text kinds possibly only a prefix; see ``truncated``).
        extension: Lower-case extension without the dot ("" when there is none).
        limits: The caps in force.
        collector: Where the parser adds its pages.
        warnings: Notes for the outcome (truncation, lossy decoding, skipped parts).
        truncated: True when ``data`` is only the first part of a longer text file.
        title: Set by the parser when the document names itself.
    """

    path: Path
    data: bytes
    extension: str
    limits: ParseLimits
    collector: PageCollector
    warnings: list[str] = field(default_factory=list)
    truncated: bool = False
    title: str | None = None


ParserFunction = Callable[[ParseInput], None]

_PARSERS: dict[str, ParserFunction] = {}


def register(kind: str) -> Callable[[ParserFunction], ParserFunction]:
    """Register the decorated function as the parser for ``kind``."""

    def decorator(function: ParserFunction) -> ParserFunction:
        if kind in _PARSERS:
            raise ValueError(f"a parser for {kind!r} is already registered")
        _PARSERS[kind] = function
        return function

    return decorator


def parser_for(kind: str) -> ParserFunction | None:
    """The parser registered for ``kind``, or None."""
    return _PARSERS.get(kind)


def registered_kinds() -> list[str]:
    """All kinds that have a parser, sorted."""
    return sorted(_PARSERS)
