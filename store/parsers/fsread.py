"""Reading one file safely: regular files only, no symlinks followed, never blocking on a FIFO.

The file is opened once and read from that descriptor, so what was checked is what is parsed.
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from .verdicts import FileBroken, FileSkipped

_HEAD_BYTES = 8192
_READ_CHUNK = 1024 * 1024


@dataclass(frozen=True)
class FileBytes:
    """The bytes read from a file and how large the file was when opened."""

    data: bytes
    size: int

    @property
    def truncated(self) -> bool:
        """True when only the first part of the file was read."""
        return len(self.data) < self.size


def _kind_of_mode(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a named pipe (FIFO)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISDIR(mode):
        return "a folder"
    return "not a regular file"


def _megabytes(size: int) -> str:
    return f"{size / (1024 * 1024):,.1f} MB"


def _os_error(error: OSError, path: Path) -> FileBroken | FileSkipped:
    if isinstance(error, FileNotFoundError):
        return FileBroken("file disappeared before it could be read")
    if isinstance(error, PermissionError):
        return FileBroken(
            f"permission denied: {os.fsdecode(path.name)!r} cannot be read by this user; "
            "check the file's permissions"
        )
    if error.errno == errno.ENAMETOOLONG:
        return FileBroken("the file name is too long for the operating system to open")
    if error.errno == errno.ELOOP:
        return FileSkipped("symbolic link (links are not followed)")
    if error.errno == errno.EIO:
        return FileBroken("the disk reported an input/output error while reading this file")
    return FileBroken(f"could not read the file: {error.strerror or error}")


def check_regular_file(path: Path, max_bytes: int) -> os.stat_result:
    """Stat ``path`` without following links and refuse anything that is not a small enough file.

    Raises:
        FileSkipped: Symlink, FIFO, device, folder, or larger than ``max_bytes``.
        FileBroken: Missing, permission denied, name too long, I/O error.
    """
    try:
        info = os.lstat(path)
    except OSError as error:
        raise _os_error(error, path) from None
    if stat.S_ISLNK(info.st_mode):
        raise FileSkipped("symbolic link (links are not followed)")
    if not stat.S_ISREG(info.st_mode):
        raise FileSkipped(f"not a regular file ({_kind_of_mode(info.st_mode)})")
    if info.st_size > max_bytes:
        raise FileSkipped(
            f"too large ({_megabytes(info.st_size)}; the limit is {_megabytes(max_bytes)})"
        )
    return info


def open_regular_file(path: Path, max_bytes: int) -> tuple[int, os.stat_result]:
    """Open ``path`` for reading after checking it; returns the descriptor and its fstat.

    O_NOFOLLOW and O_NONBLOCK close the gap between the check and the open: a symlink or FIFO
    swapped in meanwhile fails or is refused instead of being followed or blocking forever.
    """
    check_regular_file(path, max_bytes)
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    flags |= getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags)
    except OSError as error:
        raise _os_error(error, path) from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise FileSkipped(f"not a regular file ({_kind_of_mode(info.st_mode)})")
        if info.st_size > max_bytes:
            raise FileSkipped(
                f"too large ({_megabytes(info.st_size)}; the limit is {_megabytes(max_bytes)})"
            )
    except BaseException:
        os.close(fd)
        raise
    return fd, info


def read_head(fd: int) -> bytes:
    """The first bytes of the open file, for type detection."""
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        return os.read(fd, _HEAD_BYTES)
    except OSError as error:
        raise FileBroken(f"could not read the file: {error.strerror or error}") from None


def read_bytes(fd: int, size: int, limit: int) -> FileBytes:
    """Read at most ``limit`` bytes from the start of the open file.

    Args:
        fd: The descriptor from ``open_regular_file``.
        size: The file size from fstat (the file may change while being read).
        limit: How many bytes to read at most.
    """
    chunks: list[bytes] = []
    remaining = limit
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        while remaining > 0:
            chunk = os.read(fd, min(_READ_CHUNK, remaining))
            if not chunk:
                break
            chunks.append(chunk)
            remaining -= len(chunk)
    except OSError as error:
        raise FileBroken(f"could not read the file: {error.strerror or error}") from None
    data = b"".join(chunks)
    return FileBytes(data=data, size=max(size, len(data)))
