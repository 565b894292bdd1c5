"""Opening a user's file safely: regular files only, no symlinks followed, never blocking.

This is the one way Bastion opens a file from a user's folder, for hashing (the sync) and for
parsing (the workers) alike. The file is opened once, checked through its descriptor and read
from it, so what was checked is what is read. Given what the scan saw of it (a ``FileStat`` with
device and inode), the open must find that very file, and reading stops a margin past the size
the scan saw: a file swapped after the scan for a FIFO, a device, a symbolic link out of the
folder or an endless file costs a refusal, never a hang or a read outside the folder.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .limits import DEFAULT_MAX_BYTES
from .verdicts import FileBroken, FileChanged, FileSkipped, FileVanished

_HEAD_BYTES = 8192
_READ_CHUNK = 1024 * 1024
# How much a file may grow between the scan and the read before it counts as changed: an
# editor appending a line is read; a file swapped for something endless is not.
GROWTH_MARGIN = 1024 * 1024
_OPEN_FLAGS = (
    os.O_RDONLY
    | getattr(os, "O_NOFOLLOW", 0)  # a symlink swapped in fails with ELOOP instead of being followed
    | getattr(os, "O_NONBLOCK", 0)  # a FIFO swapped in opens at once instead of blocking forever
    | getattr(os, "O_NOCTTY", 0)  # a terminal swapped in never becomes our controlling terminal
    | getattr(os, "O_CLOEXEC", 0)  # parse workers and the engine never inherit the descriptor
    | getattr(os, "O_BINARY", 0)
)


@dataclass(frozen=True)
class FileStat:
    """What a stat said of a file: size and modification time, and which file it was.

    ``device``/``inode`` name the file itself; None when not known.
    """

    size: int
    mtime_ns: int
    device: int | None = None
    inode: int | None = None

    @classmethod
    def of(cls, info: os.stat_result) -> FileStat:
        """The ``FileStat`` of a stat result."""
        return cls(info.st_size, info.st_mtime_ns, info.st_dev, info.st_ino)

    def same_file(self, info: os.stat_result) -> bool:
        """True when ``info`` describes the same file (device and inode), or identity is unknown."""
        if self.device is None or self.inode is None:
            return True
        return (info.st_dev, info.st_ino) == (self.device, self.inode)

    def read_bound(self) -> int:
        """The most bytes a read of this file may return: its size plus ``GROWTH_MARGIN``."""
        return self.size + GROWTH_MARGIN


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
        return FileVanished("file disappeared before it could be read")
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


def open_regular_file(
    path: Path, max_bytes: int, expected: FileStat | None = None
) -> tuple[int, os.stat_result]:
    """Open ``path`` for reading after checking it; returns the descriptor and its fstat.

    The check (``lstat``) refuses links, FIFOs and devices without opening them. O_NOFOLLOW and
    O_NONBLOCK close the gap between the check and the open: a symlink or FIFO swapped in
    meanwhile fails or is refused instead of being followed or blocking forever. The descriptor
    is then checked again, and against ``expected``.

    Args:
        path: The file.
        max_bytes: Larger files are refused as too large.
        expected: What the scan saw; the open must find the same device and inode, at most
            ``GROWTH_MARGIN`` bytes larger.

    Raises:
        FileSkipped: Symlink, FIFO, device, folder, or larger than ``max_bytes``.
        FileChanged: Not the file the scan saw, or grown past the margin since.
        FileVanished: It no longer exists.
        FileBroken: Permission denied, name too long, I/O error.
    """
    check_regular_file(path, max_bytes)
    try:
        fd = os.open(path, _OPEN_FLAGS)
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
        if expected is not None:
            _check_expected(info, expected)
    except BaseException:
        os.close(fd)
        raise
    return fd, info


def _check_expected(info: os.stat_result, expected: FileStat) -> None:
    if not expected.same_file(info):
        raise FileChanged("it was replaced by another file after the folder was scanned")
    if info.st_size > expected.read_bound():
        raise FileChanged(
            f"it grew from {_megabytes(expected.size)} to {_megabytes(info.st_size)} after "
            "the folder was scanned"
        )


def sha256_file(
    path: str | Path,
    expected: FileStat | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
    tick: Callable[[], None] | None = None,
) -> tuple[str, FileStat]:
    """SHA-256 of a file, read through ``open_regular_file``, and its fstat taken before reading.

    Reads at most the expected size (or the size at open) plus ``GROWTH_MARGIN``; ``tick`` is
    called after every block read (a watchdog tells a slow read from a stalled one by it).

    Raises:
        FileSkipped, FileChanged, FileVanished, FileBroken: as ``open_regular_file``;
        FileChanged also when the file grows past the bound while being read.
    """
    fd, info = open_regular_file(Path(path), max_bytes, expected)
    bound = (expected or FileStat.of(info)).read_bound()
    digest = hashlib.sha256()
    total = 0
    try:
        while block := os.read(fd, min(_READ_CHUNK, bound + 1 - total)):
            total += len(block)
            if total > bound:
                raise FileChanged("it kept growing while it was being read")
            digest.update(block)
            if tick is not None:
                tick()
    except OSError as error:
        raise FileBroken(f"could not read the file: {error.strerror or error}") from None
    finally:
        os.close(fd)
    return digest.hexdigest(), FileStat.of(info)


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
        # One read of the whole file where it fits: a list of pieces joined at the end would
        # hold the file twice at the peak.
        want = min(remaining, size) or min(remaining, _READ_CHUNK)
        while remaining > 0:
            chunk = os.read(fd, want)
            if not chunk:
                break
            chunks.append(chunk)
            remaining -= len(chunk)
            want = min(_READ_CHUNK, remaining)
    except OSError as error:
        raise FileBroken(f"could not read the file: {error.strerror or error}") from None
    data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
    return FileBytes(data=data, size=max(size, len(data)))
