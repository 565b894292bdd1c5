"""Where the resident service listens and who holds it: the socket, its lock and its log.

Standard library only: the command line reads these before it decides to load anything.

The socket (``bastion.sock``) and the lock file (``service.lock``) live in the data folder,
which is 0700; the socket itself is made 0600, and that is its guard (no token on it). The lock
is an ``flock`` held for the service's whole life: the kernel drops it when the process dies,
so a killed service never blocks the next one, and the lock file's text (pid, socket, HTTP
address) tells a second ``bastion serve`` where the first one runs.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import socket
from pathlib import Path

SOCKET_FILE = "bastion.sock"
LOCK_FILE = "service.lock"
LOG_FILE = "service.log"
# A Unix socket's path must fit in sun_path (108 bytes on Linux, with its terminating NUL).
MAX_SOCKET_PATH = 107


def socket_path(home: Path) -> Path:
    return home / SOCKET_FILE


def lock_path(home: Path) -> Path:
    return home / LOCK_FILE


def log_path(home: Path) -> Path:
    return home / "logs" / LOG_FILE


class ServiceLock:
    """The one-service-per-data-folder lock. ``acquire`` returns False when another holds it."""

    def __init__(self, home: Path) -> None:
        self.path = lock_path(home)
        self._fd: int | None = None

    def acquire(self) -> bool:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            os.close(fd)
            if error.errno in (errno.EWOULDBLOCK, errno.EACCES):
                return False
            raise
        self._fd = fd
        return True

    def describe(self, **details: object) -> None:
        """Write where this service runs into the lock file (for a second ``bastion serve``)."""
        assert self._fd is not None
        text = json.dumps({"pid": os.getpid(), **details}).encode()
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, text, 0)

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the flock
            self._fd = None


def holder(home: Path) -> dict[str, object]:
    """What the running service wrote into the lock file (empty if unknown)."""
    with contextlib.suppress(OSError, ValueError):
        raw = json.loads(lock_path(home).read_text(encoding="utf-8") or "{}")
        if isinstance(raw, dict):
            return raw
    return {}


def where_it_runs(home: Path) -> str:
    """A sentence naming the running service: its process, socket and HTTP address."""
    info = holder(home)
    parts = [f"process {info['pid']}" if "pid" in info else "another process",
             f"socket {socket_path(home)}"]
    if info.get("http"):
        parts.append(f"HTTP {info['http']}")
    return ", ".join(parts)


def connect(path: Path, timeout_s: float | None = None) -> socket.socket:
    """A connected Unix socket to ``path``; raises ``OSError`` (ENOENT, ECONNREFUSED…) if no
    service listens there."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout_s)
    try:
        sock.connect(str(path))
    except BaseException:
        sock.close()
        raise
    return sock


def is_listening(path: Path) -> bool:
    """Whether a service accepts connections on ``path`` (a stale file from a killed one: no)."""
    try:
        connect(path, timeout_s=1.0).close()
    except OSError:
        return False
    return True
