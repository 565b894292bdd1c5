"""SHA-256 of model files, a cache of them keyed by (path, size, mtime_ns), and atomic JSON files.

Hashing a multi-gigabyte model takes tens of seconds, so a hash is reused while the file's size
and modification time are unchanged; a replaced or rewritten file gets a new size or mtime and is
hashed again. ``verify`` always re-reads the file, because a same-size, same-mtime replacement is
possible in principle.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

Progress = Callable[[int, int], None]
"""Called as ``progress(done_bytes, total_bytes)`` during long file work."""

CHUNK_BYTES = 1 << 20
HASH_CACHE_NAME = ".sha256-cache.json"


def sha256_file(path: Path, progress: Progress | None = None) -> str:
    """The hex SHA-256 of a file, read in 1 MiB chunks.

    Args:
        path: the file.
        progress: optional callback ``(done_bytes, total_bytes)``.
    """
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        total = os.fstat(file.fileno()).st_size
        done = 0
        buffer = bytearray(CHUNK_BYTES)
        view = memoryview(buffer)
        while n := file.readinto(buffer):
            digest.update(view[:n])
            done += n
            if progress is not None:
                progress(done, total)
    return digest.hexdigest()


def write_json_atomic(path: Path, data: Any) -> None:
    """Replace ``path`` with ``data`` as JSON so a crash leaves the old or the new file, whole.

    The file is private to the user (0600): temp file, fsync, ``os.replace``, fsync the folder.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    payload = json.dumps(data, indent=2, sort_keys=True).encode("utf-8")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(payload)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    fsync_dir(path.parent)


def fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable (a no-op where folders cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def read_json_object(path: Path) -> dict[str, Any]:
    """A JSON object from ``path``; {} if it is missing or unreadable (caches are rebuildable)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


@contextlib.contextmanager
def folder_lock(folder: Path) -> Iterator[None]:
    """Serialise read-modify-write of a folder's JSON files between processes (POSIX)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    fd = os.open(folder / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


class HashCache:
    """SHA-256 values of files, reused while (size, mtime_ns) are unchanged.

    Stored as a small JSON file (by default ``.sha256-cache.json`` in the models folder) mapping
    the absolute path to ``{"size", "mtime_ns", "sha256"}``.
    """

    def __init__(self, cache_file: Path) -> None:
        self.cache_file = cache_file

    def _key(self, path: Path) -> str:
        return str(Path(path).absolute())

    def cached(self, path: Path) -> str | None:
        """The cached hash if the file still has the size and mtime it was hashed at."""
        try:
            st = os.stat(path)
        except OSError:
            return None
        entry = read_json_object(self.cache_file).get(self._key(path))
        if (isinstance(entry, dict) and entry.get("size") == st.st_size
                and entry.get("mtime_ns") == st.st_mtime_ns and isinstance(entry.get("sha256"), str)):
            return str(entry["sha256"])
        return None

    def sha256(self, path: Path, progress: Progress | None = None, *, force: bool = False) -> str:
        """The file's SHA-256, from the cache unless the file changed (or ``force``)."""
        if not force:
            hit = self.cached(path)
            if hit is not None:
                return hit
        before = os.stat(path)
        digest = sha256_file(path, progress)
        after = os.stat(path)
        if (before.st_size, before.st_mtime_ns) == (after.st_size, after.st_mtime_ns):
            self.store(path, digest, size=after.st_size, mtime_ns=after.st_mtime_ns)
        return digest

    def store(self, path: Path, digest: str, *, size: int, mtime_ns: int) -> None:
        """Record ``digest`` for ``path`` at the given size and mtime."""
        folder = self.cache_file.parent
        if not folder.is_dir():
            return  # nowhere to keep it; hashing still worked
        try:
            with folder_lock(folder):
                data = read_json_object(self.cache_file)
                data[self._key(path)] = {"size": size, "mtime_ns": mtime_ns, "sha256": digest}
                # Forget files that are gone, so the cache does not grow forever.
                data = {k: v for k, v in data.items() if os.path.exists(k)}
                write_json_atomic(self.cache_file, data)
        except OSError:
            pass  # a read-only or full disk must not stop a listing; the hash is still right
