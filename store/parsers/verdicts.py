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


class FileVanished(FileBroken):
    """The file no longer exists (deleted or renamed since it was listed)."""


class FileChanged(FileBroken):
    """The path no longer holds the file the scan saw: replaced, or grown past the read bound.

    A sync reads such a file again after a fresh scan; on its own it is a failure.
    """
