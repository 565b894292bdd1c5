"""One write transaction for every multi-statement write, and migrations that are all or nothing."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest
import sqlite_utils

from bastion.store import migrations
from bastion.store.db import LibraryLockedError, open_library_db, write_transaction
from bastion.store.errors import StoreError
from bastion.store.transactions import TransactionEndedEarly, transaction

from .sqlite_faults import FAULT, fault_on, refuse_ledger_rows, snapshot

# Python's default mode (implicit BEGIN before DML; library.db) and autocommit (bastion.db).
MODES = {"default": "", "autocommit": None}


@pytest.fixture(params=sorted(MODES))
def conn(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[sqlite3.Connection]:
    path = tmp_path / "t.db"
    with closing(sqlite3.connect(path, isolation_level=None)) as setup:
        setup.execute("PRAGMA journal_mode=WAL")
        setup.execute("CREATE TABLE a (x)")
        setup.execute("CREATE TABLE b (x)")
    connection = sqlite3.connect(path, timeout=0.1, isolation_level=MODES[request.param])
    yield connection
    connection.close()


def other_connection(conn: sqlite3.Connection) -> sqlite3.Connection:
    """A second connection to the same file, as another process would hold it."""
    path = conn.execute("PRAGMA database_list").fetchone()[2]
    return sqlite3.connect(path, timeout=0, isolation_level=None)


def rows(conn: sqlite3.Connection, table: str) -> list[int]:
    return [r[0] for r in conn.execute(f"SELECT x FROM {table} ORDER BY x")]


def test_the_block_is_committed_as_one_unit(conn: sqlite3.Connection) -> None:
    with closing(other_connection(conn)) as other:
        with transaction(conn):
            conn.execute("INSERT INTO a VALUES (1)")
            conn.execute("INSERT INTO b VALUES (2)")
            assert rows(other, "a") == []  # nothing visible before the end of the block
        assert not conn.in_transaction
        assert (rows(other, "a"), rows(other, "b")) == ([1], [2])


def test_a_statement_failing_half_way_rolls_back_the_whole_block(conn: sqlite3.Connection) -> None:
    conn.execute("INSERT INTO a VALUES (0)")
    conn.commit()
    before = snapshot(conn)
    with (
        fault_on(conn, "INSERT", "b"),
        pytest.raises(sqlite3.IntegrityError, match=FAULT),
        transaction(conn),
    ):
        conn.execute("INSERT INTO a VALUES (1)")
        conn.execute("DELETE FROM a WHERE x = 0")
        conn.execute("INSERT INTO b VALUES (2)")
    assert not conn.in_transaction
    assert snapshot(conn) == before


def test_an_exception_in_the_block_rolls_it_back(conn: sqlite3.Connection) -> None:
    with pytest.raises(KeyboardInterrupt), transaction(conn):
        conn.execute("INSERT INTO a VALUES (1)")
        raise KeyboardInterrupt
    assert rows(conn, "a") == [] and not conn.in_transaction


def test_the_write_lock_is_taken_before_the_first_statement(conn: sqlite3.Connection) -> None:
    with (
        closing(other_connection(conn)) as other,
        transaction(conn),
        pytest.raises(sqlite3.OperationalError, match="locked"),
    ):
        other.execute("BEGIN IMMEDIATE")


def test_a_database_busy_past_the_timeout_raises_the_callers_error(conn: sqlite3.Connection) -> None:
    with closing(other_connection(conn)) as other:
        other.execute("BEGIN IMMEDIATE")
        with pytest.raises(sqlite3.OperationalError, match="locked"), transaction(conn):
            pass
        with (
            pytest.raises(StoreError, match="try later"),
            transaction(conn, busy=lambda: StoreError("busy, try later")),
        ):
            pass
        other.execute("ROLLBACK")
    assert not conn.in_transaction


def test_a_nested_block_is_a_savepoint(conn: sqlite3.Connection) -> None:
    with transaction(conn):
        conn.execute("INSERT INTO a VALUES (1)")
        with pytest.raises(ValueError), transaction(conn):
            conn.execute("INSERT INTO a VALUES (2)")
            raise ValueError
        with transaction(conn):
            conn.execute("INSERT INTO a VALUES (3)")
    assert rows(conn, "a") == [1, 3]

    with pytest.raises(ValueError), transaction(conn):
        with transaction(conn):
            conn.execute("INSERT INTO a VALUES (4)")
        raise ValueError  # the outer failure takes the finished inner block with it
    assert rows(conn, "a") == [1, 3] and not conn.in_transaction


@pytest.mark.parametrize("nested", [False, True])
def test_an_error_that_rolled_back_the_transaction_itself_is_not_hidden(
    conn: sqlite3.Connection, nested: bool
) -> None:
    # RAISE(ROLLBACK) ends the whole transaction, as disk-full or I/O errors can; the caller
    # must see that error, not "cannot rollback - no transaction is active".
    conn.execute(
        "CREATE TEMP TRIGGER gone BEFORE INSERT ON main.b BEGIN SELECT RAISE(ROLLBACK, 'gone'); END"
    )
    with pytest.raises(sqlite3.IntegrityError, match="gone"), transaction(conn):
        conn.execute("INSERT INTO a VALUES (1)")
        if nested:
            with transaction(conn):
                conn.execute("INSERT INTO b VALUES (2)")
        else:
            conn.execute("INSERT INTO b VALUES (2)")
    assert rows(conn, "a") == [] and not conn.in_transaction


def test_a_block_that_commits_is_refused(conn: sqlite3.Connection) -> None:
    with pytest.raises(TransactionEndedEarly, match="bug"), transaction(conn):
        conn.execute("INSERT INTO a VALUES (1)")
        conn.commit()
        # Python's default mode silently opens a new transaction here: still caught (and that
        # part rolled back; in autocommit mode it was saved on its own, as was the first).
        conn.execute("INSERT INTO a VALUES (2)")
    assert rows(conn, "a")[0] == 1 and not conn.in_transaction


def test_executescript_inside_a_block_is_refused(conn: sqlite3.Connection) -> None:
    with pytest.raises(TransactionEndedEarly), transaction(conn):
        conn.execute("INSERT INTO a VALUES (1)")
        conn.executescript("INSERT INTO b VALUES (2);")  # commits first, then runs on its own
    assert not conn.in_transaction


# -- library.db ------------------------------------------------------------------------------


def test_write_transaction_on_a_locked_library_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "library.db"
    db = open_library_db(path)
    db.execute("PRAGMA busy_timeout = 50")
    with closing(sqlite3.connect(path, timeout=0, isolation_level=None)) as other:
        other.execute("BEGIN IMMEDIATE")
        with pytest.raises(LibraryLockedError, match=r"library\.db is busy"), write_transaction(db):
            pass
        other.execute("ROLLBACK")
    db.close()


@pytest.mark.parametrize(
    "index", range(len(migrations.MIGRATIONS)), ids=[n for n, _ in migrations.MIGRATIONS]
)
def test_a_library_migration_refused_its_version_bump_leaves_the_file_as_it_was(
    tmp_path: Path, index: int
) -> None:
    path = tmp_path / "library.db"
    with closing(sqlite_utils.Database(path)) as db:  # the index as the previous version left it
        migrations.run_migrations(db, migrations.MIGRATIONS[:index])
        refuse_ledger_rows(db.conn, "applied_at")
        before = snapshot(db.conn)

    with pytest.raises(StoreError):
        open_library_db(path)

    with closing(sqlite3.connect(path)) as conn:
        assert snapshot(conn) == before
        conn.execute("DROP TRIGGER refuse_ledger_rows")
        conn.commit()
    open_library_db(path).close()  # once the fault is gone, the same migration goes through


def test_the_first_library_migration_failing_midway_leaves_the_file_as_it_was(tmp_path: Path) -> None:
    path = tmp_path / "library.db"
    with closing(sqlite3.connect(path)) as conn:
        # m001 creates five tables and an index, then fails on the FTS table, before its
        # triggers and its ledger row.
        conn.execute("CREATE TABLE chunks_fts (x)")
        conn.commit()
        before = snapshot(conn)

    with pytest.raises(StoreError, match="already exists"):
        open_library_db(path)

    with closing(sqlite3.connect(path)) as conn:
        assert snapshot(conn) == before
