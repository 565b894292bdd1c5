"""Walking a root folder with ``os.scandir``: stat only, never a file's contents.

Hidden entries (a name starting with a dot, or the hidden attribute on Windows) are passed over
unless asked for: ``.git`` and its thousands of objects are not documents. A hidden folder is
not even listed; the result counts what was passed over, so the status can say so.

Files are read only under the root the user chose: symbolic links are never followed (one that
points inside the root names a file the walk finds under its own name; one that points outside
is refused), symlinked folders are not descended, and folder loops (bind mounts) are cut by
(device, inode). Each file's device and inode are kept, so the read can insist on the very
file the scan saw (``parsers.fsread.open_regular_file``).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from dataclasses import dataclass, field

from .parsers.fsread import FileStat

__all__ = ["FileStat", "ScanResult", "display_path", "is_hidden", "scan_root"]


@dataclass
class ScanResult:
    """What one root holds right now.

    ``files``: regular files by path (``str`` with surrogate escapes for non-UTF-8 names).
    ``refused``: entries that are not indexable, with the reason (symlink out, FIFO, ...).
    ``unreadable``: folders that could not be listed, with the cause ("permission denied");
    documents under them are kept, not deleted.
    ``available``: False when the root itself is missing (unplugged drive); ``unreadable``
    then holds the root and why.
    ``hidden_folders``/``hidden_files``: hidden entries passed over (the contents of a hidden
    folder are not counted: it is never listed).
    """

    root: str
    available: bool = True
    files: dict[str, FileStat] = field(default_factory=dict)
    refused: dict[str, str] = field(default_factory=dict)
    unreadable: dict[str, str] = field(default_factory=dict)
    hidden_folders: int = 0
    hidden_files: int = 0


def display_path(path: str) -> str:
    """``path`` for people and for SQLite TEXT: undecodable bytes become U+FFFD."""
    return os.fsencode(path).decode("utf-8", "replace")


def is_hidden(name: str, st: os.stat_result | None = None) -> bool:
    """True for a hidden entry: a dot name (``.git``, ``.env``), or Windows' hidden attribute."""
    if name.startswith("."):
        return True
    attributes = getattr(st, "st_file_attributes", 0) if st is not None else 0
    return bool(attributes & getattr(stat, "FILE_ATTRIBUTE_HIDDEN", 0))


def scan_root(
    root: str, *, include_hidden: bool = False, tick: Callable[[], None] | None = None
) -> ScanResult:
    """List the regular files under ``root`` with their size and mtime_ns.

    Args:
        root: The folder the user chose (itself never judged hidden: it was chosen).
        include_hidden: Also walk hidden folders and list hidden files.
        tick: Called after every entry looked at (a watchdog tells a long walk from a
            stalled one by it).
    """
    result = ScanResult(root=root)
    try:
        root_stat = os.stat(root)
    except OSError as error:
        result.available = False
        result.unreadable[root] = os_cause(error)
        return result
    if not stat.S_ISDIR(root_stat.st_mode):
        result.available = False
        result.unreadable[root] = "not a folder any more"
        return result
    real_root = os.path.realpath(root)
    seen_dirs = {(root_stat.st_dev, root_stat.st_ino)}
    stack = [root]
    while stack:
        folder = stack.pop()
        try:
            with os.scandir(folder) as entries:
                for entry in entries:
                    _visit(entry, real_root, result, stack, seen_dirs, include_hidden)
                    if tick is not None:
                        tick()
        except OSError as error:
            result.unreadable[folder] = os_cause(error)
    return result


def os_cause(error: OSError) -> str:
    """The operating system's word for ``error``, lower-case ("permission denied")."""
    text = error.strerror or str(error) or type(error).__name__
    return text[:1].lower() + text[1:]


def _visit(
    entry: os.DirEntry[str],
    real_root: str,
    result: ScanResult,
    stack: list[str],
    seen_dirs: set[tuple[int, int]],
    include_hidden: bool,
) -> None:
    try:
        if not include_hidden and entry.name.startswith("."):
            # Known from the name alone: no stat, and a hidden folder is never listed.
            _count_hidden(entry, result)
            return
        if entry.is_symlink():
            _visit_link(entry, real_root, result)
            return
        st = entry.stat(follow_symlinks=False)
    except OSError as error:
        result.refused[entry.path] = f"Cannot read its details ({error.strerror or error})."
        return
    if not include_hidden and is_hidden(entry.name, st):
        _count_hidden(entry, result)
        return
    if stat.S_ISDIR(st.st_mode):
        key = (st.st_dev, st.st_ino)
        if key not in seen_dirs:  # a bind-mount loop would otherwise never end
            seen_dirs.add(key)
            stack.append(entry.path)
    elif stat.S_ISREG(st.st_mode):
        result.files[entry.path] = FileStat.of(st)
    else:
        result.refused[entry.path] = "Not a regular file (a pipe, socket or device); not indexed."


def _count_hidden(entry: os.DirEntry[str], result: ScanResult) -> None:
    try:
        folder = entry.is_dir(follow_symlinks=False)
    except OSError:
        folder = False
    if folder:
        result.hidden_folders += 1
    else:
        result.hidden_files += 1


def _visit_link(entry: os.DirEntry[str], real_root: str, result: ScanResult) -> None:
    try:
        target = os.path.realpath(entry.path, strict=True)
    except OSError as error:
        if "loop" in str(error).lower() or getattr(error, "errno", None) == 40:
            result.refused[entry.path] = "A symbolic link loop; not followed."
        else:
            result.refused[entry.path] = "A symbolic link to something that does not exist."
        return
    if os.path.commonpath([real_root, target]) != real_root:
        result.refused[entry.path] = (
            "A symbolic link to a place outside the chosen folder; not followed. "
            "Add that place as a folder of its own to index it."
        )
        return
    try:
        st = os.lstat(target)  # ``target`` is a real path: its last part is no link
    except OSError as error:
        result.refused[entry.path] = f"Cannot read its details ({error.strerror or error})."
        return
    if stat.S_ISREG(st.st_mode):
        # Reads never follow links, and the walk finds this file under its own name.
        result.refused[entry.path] = (
            f"A symbolic link to {display_path(os.path.relpath(target, real_root))} in the same "
            "folder; that file is indexed under its own name."
        )
    elif not stat.S_ISDIR(st.st_mode):
        result.refused[entry.path] = "Not a regular file (a pipe, socket or device); not indexed."
    # A symlinked folder inside the root is indexed through its real path already.
