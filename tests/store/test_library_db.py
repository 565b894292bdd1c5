"""library.db: named transactional migrations, WAL, triggers keeping FTS5 in sync."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from bastion.store import migrations
from bastion.store.db import open_library_db, write_transaction
from bastion.store.errors import StoreError


def test_fresh_database_is_migrated_in_wal_with_foreign_keys(tmp_path: Path) -> None:
    db = open_library_db(tmp_path / "library.db")
    names = [r[0] for r in db.execute("SELECT name FROM _migrations ORDER BY applied_at").fetchall()]
    assert names == [name for name, _ in migrations.MIGRATIONS]
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert db.execute("PRAGMA busy_timeout").fetchone()[0] > 0
    assert {"collections", "folders", "documents", "chunks", "embeddings", "chunks_fts"} <= set(db.table_names())
    db.close()
    again = open_library_db(tmp_path / "library.db")
    assert migrations.migrate(again) == []  # idempotent
    again.close()


def test_a_failing_migration_leaves_nothing_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = open_library_db(tmp_path / "library.db")

    def m999_broken(db):  # type: ignore[no-untyped-def]
        db.execute("CREATE TABLE half_done (x)")
        raise RuntimeError("boom")

    monkeypatch.setattr(migrations, "MIGRATIONS", [*migrations.MIGRATIONS, ("m999_broken", m999_broken)])
    with pytest.raises(RuntimeError):
        migrations.migrate(db)
    assert "half_done" not in db.table_names()
    assert db.execute("SELECT COUNT(*) FROM _migrations WHERE name = 'm999_broken'").fetchone()[0] == 0
    db.close()


def test_fts_triggers_follow_inserts_updates_and_cascading_deletes(tmp_path: Path) -> None:
    db = open_library_db(tmp_path / "library.db")
    with write_transaction(db):
        db.execute("INSERT INTO collections (id, name, created) VALUES (1, 'c', 0)")
        db.execute("INSERT INTO folders (id, collection_id, root, root_bytes) VALUES (1, 1, '/r', x'2f72')")
        db.execute(
            "INSERT INTO documents (id, collection_id, folder_id, path, path_bytes, state, updated_at) "
            "VALUES (1, 1, 1, '/r/a', x'2f722f61', 'indexed', 0)"
        )
        db.execute(
            "INSERT INTO chunks (id, document_id, ordinal, text, char_start, char_end) "
            "VALUES (1, 1, 0, 'walruses basking', 0, 16)"
        )
        db.execute("INSERT INTO embeddings (chunk_id, vector) VALUES (1, x'0000803f')")

    def match(word: str) -> int:
        return int(db.execute("SELECT COUNT(*) FROM chunks_fts WHERE chunks_fts MATCH ?", [word]).fetchone()[0])

    assert match("bask") == 1  # porter stemming
    db.execute("UPDATE chunks SET text = 'penguins waddle' WHERE id = 1")
    assert match("bask") == 0 and match("penguin") == 1
    db.execute("DELETE FROM collections WHERE id = 1")  # cascades down to chunks and vectors
    assert match("penguin") == 0
    assert db.execute("SELECT COUNT(*) FROM embeddings").fetchone()[0] == 0
    db.execute("INSERT INTO chunks_fts(chunks_fts) VALUES ('integrity-check')")
    db.close()


def test_write_transaction_rolls_back_on_error(tmp_path: Path) -> None:
    db = open_library_db(tmp_path / "library.db")
    with pytest.raises(ValueError), write_transaction(db):
        db.execute("INSERT INTO collections (name, created) VALUES ('x', 0)")
        raise ValueError
    assert db.execute("SELECT COUNT(*) FROM collections").fetchone()[0] == 0
    db.close()


def test_damaged_file_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "library.db"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError, match=r"damaged|rebuilt|Cannot open"):
        open_library_db(path)


def test_state_check_constraint(tmp_path: Path) -> None:
    db = open_library_db(tmp_path / "library.db")
    db.execute("INSERT INTO collections (id, name, created) VALUES (1, 'c', 0)")
    db.execute("INSERT INTO folders (id, collection_id, root, root_bytes) VALUES (1, 1, '/r', x'2f')")
    with pytest.raises(sqlite3.IntegrityError):
        db.execute(
            "INSERT INTO documents (collection_id, folder_id, path, path_bytes, state, updated_at) "
            "VALUES (1, 1, 'p', x'70', 'bogus', 0)"
        )
    db.close()
