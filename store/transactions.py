"""One write transaction for every multi-statement write, in both databases.

``transaction(conn)`` runs its block between ``BEGIN IMMEDIATE`` and ``COMMIT`` and rolls the
whole block back on any exception, so a failure part-way leaves the database as it was. Nested
blocks become savepoints: an inner failure undoes only the inner block, and nothing is committed
until the outermost block ends.

Why not ``with conn:``: on a connection opened with ``isolation_level=None`` it commits nothing
as a unit (each statement commits on its own), and in Python's default mode it starts a
*deferred* transaction only at the first DML statement. ``IMMEDIATE`` takes the write lock up
front, so a read that turns into a write cannot fail with SQLITE_BUSY half-way; it waits on the
busy timeout instead.

Inside a block, never call ``conn.commit()``, ``conn.executescript()`` (it commits first) or
change ``isolation_level``: each ends the transaction early. The block is then refused with
``TransactionEndedEarly`` instead of being reported as one unit that it no longer is.
"""

from __future__ import annotations

import itertools
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager

_savepoint_ids = itertools.count(1)


class TransactionEndedEarly(RuntimeError):
    """A statement inside ``transaction()`` ended the transaction: a bug in the caller."""


def is_locked(error: sqlite3.OperationalError) -> bool:
    """True when ``error`` means another connection holds the lock."""
    text = str(error).lower()
    return "locked" in text or "busy" in text


@contextmanager
def transaction(
    conn: sqlite3.Connection, *, busy: Callable[[], Exception] | None = None
) -> Iterator[sqlite3.Connection]:
    """Run the block as one unit: ``BEGIN IMMEDIATE`` … ``COMMIT``, or ``ROLLBACK`` on error.

    Args:
        conn: The connection, in Python's default mode or with ``isolation_level=None``.
        busy: Makes the error raised when another connection keeps the write lock past the
            busy timeout (by default SQLite's own "database is locked").

    Raises:
        TransactionEndedEarly: something inside the block committed or ended the transaction.
    """
    if conn.in_transaction:
        with _savepoint(conn):
            yield conn
        return
    try:
        conn.execute("BEGIN IMMEDIATE")
    except sqlite3.OperationalError as error:
        if busy is not None and is_locked(error):
            raise busy() from error
        raise
    try:
        # The savepoint marks this transaction. Were it ended inside the block and another
        # opened (Python's default mode opens one before any DML), in_transaction would still
        # be true; the missing mark is what tells the two apart.
        with _savepoint(conn):
            yield conn
        conn.execute("COMMIT")
    except BaseException:
        # Some errors (disk full, I/O, a RAISE(ROLLBACK) trigger) have already rolled the
        # transaction back; rolling back again would hide them behind "no transaction".
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


@contextmanager
def _savepoint(conn: sqlite3.Connection) -> Iterator[None]:
    name = f"bastion_{next(_savepoint_ids)}"
    conn.execute(f"SAVEPOINT {name}")
    try:
        yield
    except BaseException:
        _roll_back_to(conn, name)
        raise
    if not conn.in_transaction:
        raise _ended_early()
    try:
        conn.execute(f"RELEASE SAVEPOINT {name}")
    except sqlite3.OperationalError as error:
        if _is_missing_savepoint(error):
            raise _ended_early() from error
        raise


def _roll_back_to(conn: sqlite3.Connection, name: str) -> None:
    if not conn.in_transaction:
        return  # the error rolled back the whole transaction, savepoints included
    try:
        conn.execute(f"ROLLBACK TO SAVEPOINT {name}")
    except sqlite3.OperationalError as error:
        if _is_missing_savepoint(error):
            return  # the block ended the transaction itself; let its own error through
        raise
    conn.execute(f"RELEASE SAVEPOINT {name}")


def _is_missing_savepoint(error: sqlite3.OperationalError) -> bool:
    return str(error).startswith("no such savepoint")


def _ended_early() -> TransactionEndedEarly:
    return TransactionEndedEarly(
        "A database write ended its transaction before the end of its block (a commit, an "
        "executescript, or an error that rolled it back was caught); part of it may have been "
        "saved on its own. This is a bug in Bastion: please report it."
    )
