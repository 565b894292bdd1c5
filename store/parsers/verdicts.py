"""Exceptions a parser raises to end a file with a stated status instead of text.

They never leave ``parse_file``: it turns them into a ``ParseOutcome``. The message is the
outcome's reason, so it must be a sentence a person can act on.
"""

from __future__ import annotations

from ..errors import StoreError


class FileSkipped(StoreError):
    """The file is not indexable by design (encrypted, binary, too large, unsupported type)."""


class FileBroken(StoreError):
    """The file is damaged or hostile (corrupt, zip bomb, DTD in XML, unreadable)."""
