"""Real SQLite faults for atomicity tests, and snapshots to compare a database before and after.

A fault is a trigger that makes SQLite itself refuse a statement (``RAISE(ABORT)``), so the
code under test sees the same error a constraint or a full disk would give it; nothing of the
code under test is patched.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal

Write = Literal["INSERT", "UPDATE", "DELETE"]

FAULT = "injected fault"


def snapshot(conn: sqlite3.Connection) -> list[str]:
    """The schema and every row of the main database, as SQL text."""
    return list(conn.iterdump())


@contextmanager
def fault_on(conn: sqlite3.Connection, write: Write, table: str) -> Iterator[None]:
    """Make every ``write`` to ``table`` through ``conn`` fail while the block runs.

    The trigger is TEMP: it lives in ``conn`` only and is never part of the file, so snapshots
    taken before and after do not see it.
    """
    conn.execute(
        f"CREATE TEMP TRIGGER injected_fault BEFORE {write} ON main.{table} "
        f"BEGIN SELECT RAISE(ABORT, '{FAULT}'); END"
    )
    try:
        yield
    finally:
        conn.execute("DROP TRIGGER temp.injected_fault")


def refuse_ledger_rows(conn: sqlite3.Connection, applied_column: str) -> None:
    """Make the file refuse every new ``_migrations`` row: a migration fails at its version bump.

    Persistent (the migration runs on a connection the test does not hold); commits.
    """
    conn.execute(
        f"CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY, {applied_column} REAL)"
    )
    conn.execute(
        "CREATE TRIGGER refuse_ledger_rows BEFORE INSERT ON _migrations "
        f"BEGIN SELECT RAISE(ABORT, '{FAULT}'); END"
    )
    conn.commit()
