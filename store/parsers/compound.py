"""Opening OLE compound files (``.msg``, ``.doc``, ``.ppt``) with olefile, damage as a reason."""

from __future__ import annotations

from typing import Any

from .verdicts import FileBroken


def open_compound(data: bytes, what: str) -> Any:
    """The compound file in ``data`` as an ``olefile.OleFileIO`` (use it in a ``with``).

    Raises:
        FileBroken: "not a valid {what} (…)" when the container cannot be read.
    """
    import olefile

    try:
        return olefile.OleFileIO(data)
    except Exception as error:  # a damaged compound file raises OSError, struct or index errors
        raise broken(what, error) from None


def broken(what: str, error: BaseException) -> FileBroken:
    """The verdict for a ``what`` damaged in a way ``error`` says."""
    detail = str(error).strip() or type(error).__name__
    return FileBroken(f"not a valid {what} ({detail[:120]})")
