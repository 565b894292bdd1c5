"""Opening ``library.db``: connection settings, write transactions and locked-database errors.

The retrieval index is rebuildable, so it runs with ``synchronous=NORMAL`` in WAL mode: a power
cut may lose the last committed document, never the database's consistency. A ``Database`` belongs
to the thread that opened it; other threads open their own.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlite_utils

from .errors import StoreError
from .migrations import migrate
from .transactions import is_locked, transaction

# How long a writer waits for another process's transaction before giving up.
BUSY_TIMEOUT_MS = 10_000


class LibraryLockedError(StoreError):
    """Another process holds the library database for longer than the busy timeout."""


def locked_error(path: Path | str) -> LibraryLockedError:
    """The message shown when the database stays locked past the busy timeout."""
    return LibraryLockedError(
        f"The document library {path} is busy: another Bastion process is writing to it. "
        "Wait for it to finish (or close it) and try again."
    )


def open_library_db(
    path: Path, *, migrate_schema: bool = True, check_same_thread: bool = True
) -> sqlite_utils.Database:
    """Open (and create or upgrade) the library database at ``path``.

    Args:
        path: The ``library.db`` file; its folder must exist.
        migrate_schema: Apply pending migrations (the owner thread does; helper threads don't).
        check_same_thread: False only for a connection a helper guards with its own lock.

    Returns:
        A sqlite-utils ``Database`` with foreign keys on, WAL where possible and a busy timeout.

    Raises:
        LibraryLockedError: another process keeps the database locked.
        StoreError: the file is not a usable SQLite database.
    """
    try:
        conn = sqlite3.connect(
            str(path), timeout=BUSY_TIMEOUT_MS / 1000, check_same_thread=check_same_thread
        )
        db = sqlite_utils.Database(conn, execute_plugins=False)
        db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        db.execute("PRAGMA foreign_keys = ON")
        _enable_wal(db)
        db.execute("PRAGMA synchronous = NORMAL")
        if migrate_schema:
            migrate(db)
    except sqlite3.OperationalError as error:
        if is_locked(error):
            raise locked_error(path) from error
        raise StoreError(f"Cannot open the document library {path}: {error}.") from error
    except sqlite3.DatabaseError as error:
        raise StoreError(
            f"The document library {path} is damaged ({error}). It can be rebuilt: remove the "
            "file and run `bastion library sync`."
        ) from error
    return db


def _enable_wal(db: sqlite_utils.Database) -> None:
    # WAL needs shared memory, which network file systems don't offer reliably; there SQLite
    # keeps the rollback journal and we accept that (the answer of the PRAGMA says which).
    mode = db.execute("PRAGMA journal_mode").fetchone()[0]
    if str(mode).lower() != "wal":
        with db.ensure_autocommit_on():
            db.conn.execute("PRAGMA journal_mode = WAL")


@contextmanager
def write_transaction(db: sqlite_utils.Database) -> Iterator[sqlite_utils.Database]:
    """A ``BEGIN IMMEDIATE`` transaction: takes the write lock up front (see ``transactions``).

    Why not ``db.atomic()``: its deferred ``BEGIN`` can fail with SQLITE_BUSY when a read turns
    into a write while another connection committed; IMMEDIATE waits on the busy timeout instead.
    Nested inside another transaction it is a savepoint.

    Raises:
        LibraryLockedError: the write lock stayed taken past the busy timeout.
    """
    with transaction(db.conn, busy=lambda: locked_error(_db_file(db))):
        yield db


def _db_file(db: sqlite_utils.Database) -> str:
    row = db.execute("PRAGMA database_list").fetchone()
    return str(row[2]) if row else "library.db"
