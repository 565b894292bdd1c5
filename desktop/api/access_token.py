"""The local API's bearer token: made once, kept in the data folder, readable by the owner only."""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path

from bastion.desktop.errors import BastionError

TOKEN_FILE = "api-token"
_MAX_BYTES = 4096


def token_path(home: Path) -> Path:
    return home / TOKEN_FILE


def load_or_create_token(home: Path) -> tuple[str, bool]:
    """The token in ``home``'s token file, made at first use; and whether it was made now.

    The file is created 0600 without following links; one found readable by others is made
    private again, one that is not a regular file is refused.

    Raises:
        BastionError: the token file is not a regular file, or is empty or damaged.
    """
    path = token_path(home)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except FileExistsError:
        return _read(path), False
    token = secrets.token_urlsafe(32)
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write(token + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    return token, True


def _read(path: Path) -> str:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as error:
        raise BastionError(f"The API token file {path} cannot be read ({error.strerror}). "
                           "Delete it and start `bastion serve` again to make a new one.") from error
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise BastionError(f"The API token file {path} is not a regular file. Delete it and "
                               "start `bastion serve` again to make a new one.")
        if info.st_mode & 0o077:
            os.fchmod(handle.fileno(), 0o600)  # others may have read it: at least stop that now
        token = handle.read(_MAX_BYTES).decode("ascii", "replace").strip()
    if len(token) < 16 or not all(c.isalnum() or c in "-_" for c in token):
        raise BastionError(f"The API token file {path} is empty or damaged. Delete it and start "
                           "`bastion serve` again to make a new one.")
    return token
