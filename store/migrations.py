"""Named, transactional migrations, recorded in ``_migrations``.

Each migration is a small function registered in order (as in simonw/llm's
``embeddings_migrations.py``). A migration runs with its ``_migrations`` row in one transaction,
so a crash or an error leaves it either fully applied or not at all. Never edit an applied
migration; add one. ``MIGRATIONS`` here are those of ``library.db``; ``bastion.db`` keeps its own
list in ``chats.py`` and runs it through the same ``run_migrations``.

A migration must not commit: no ``conn.commit()``, no ``conn.executescript()`` (it commits
first). ``db.execute`` and sqlite-utils' table methods join the open transaction.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import sqlite_utils

from .document_fts import write_all_document_texts
from .transactions import transaction

Migration = Callable[[sqlite_utils.Database], None]

MIGRATIONS: list[tuple[str, Migration]] = []


def migration(fn: Migration) -> Migration:
    """Register ``fn`` as the next migration, named after the function."""
    MIGRATIONS.append((fn.__name__, fn))
    return fn


def applied_migrations(db: sqlite_utils.Database) -> set[str]:
    """Names of the migrations already applied to ``db``."""
    if "_migrations" not in db.table_names():
        return set()
    return {row[0] for row in db.execute("SELECT name FROM _migrations").fetchall()}


def migrate(db: sqlite_utils.Database) -> list[str]:
    """Apply the pending migrations of ``library.db`` in order, each in its own transaction.

    Returns:
        The names applied by this call.
    """
    return run_migrations(db, MIGRATIONS)


def run_migrations(
    db: sqlite_utils.Database,
    migrations: Sequence[tuple[str, Migration]],
    *,
    applied_column: str = "applied_at",
) -> list[str]:
    """Apply the pending ``migrations`` in order, each with its ``_migrations`` row as one unit.

    Args:
        db: The database to upgrade.
        migrations: ``(name, function)`` pairs in the order they must run.
        applied_column: The ledger's timestamp column (``bastion.db`` named it ``applied``).

    Returns:
        The names applied by this call.
    """
    done = applied_migrations(db)
    if all(name in done for name, _ in migrations):
        return []
    applied: list[str] = []
    for name, fn in migrations:
        if name in done:
            continue
        # IMMEDIATE: two processes starting at once must not both run the same migration.
        with transaction(db.conn):
            db.execute(
                "CREATE TABLE IF NOT EXISTS _migrations "
                f"(name TEXT PRIMARY KEY, {applied_column} REAL)"
            )
            if db.execute("SELECT 1 FROM _migrations WHERE name = ?", [name]).fetchone():
                continue  # the other process got there first
            fn(db)
            db.execute(
                f"INSERT INTO _migrations (name, {applied_column}) VALUES (?, ?)",
                [name, time.time()],
            )
        applied.append(name)
    return applied


@migration
def m001_initial(db: sqlite_utils.Database) -> None:
    """Collections, folders, documents, chunks (+ FTS5 kept in sync by triggers), embeddings."""
    db.execute(
        """
        CREATE TABLE collections (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            embedder_folder TEXT,          -- NULL: the embedded default model
            embedder_id TEXT,              -- index identity, set by the first sync
            dimension INTEGER,
            chunker_version TEXT,
            generation INTEGER NOT NULL DEFAULT 0,  -- bumped by every change to its chunks
            created REAL NOT NULL
        )
        """
    )
    db.execute(
        """
        CREATE TABLE folders (
            id INTEGER PRIMARY KEY,
            collection_id INTEGER NOT NULL REFERENCES collections(id) ON DELETE CASCADE,
            root TEXT NOT NULL,            -- for display
            root_bytes BLOB NOT NULL,      -- os.fsencode(): file names need not be UTF-8
            UNIQUE (collection_id, root_bytes)
        )
        """
    )
    db.execute(
        """
        CREATE TABLE documents (
            id INTEGER PRIMARY KEY,
            collection_id INTEGER NOT NULL REFERENCES collections(id) ON DELETE CASCADE,
            folder_id INTEGER NOT NULL REFERENCES folders(id) ON DELETE CASCADE,
            path TEXT NOT NULL,
            path_bytes BLOB NOT NULL,
            size INTEGER,
            mtime_ns INTEGER,
            sha256 TEXT,
            state TEXT NOT NULL CHECK (state IN ('pending', 'in_progress', 'indexed', 'skipped',
                                                 'failed', 'quarantined', 'unavailable')),
            prior_state TEXT,              -- the state to restore when a vanished root returns
            reason TEXT NOT NULL DEFAULT '',
            attempts INTEGER NOT NULL DEFAULT 0,
            kind TEXT,
            title TEXT,
            pages INTEGER,
            chunk_count INTEGER NOT NULL DEFAULT 0,
            indexed_at REAL,
            updated_at REAL NOT NULL,
            UNIQUE (folder_id, path_bytes)
        )
        """
    )
    db.execute("CREATE INDEX documents_collection_state ON documents (collection_id, state)")
    db.execute(
        """
        CREATE TABLE chunks (
            id INTEGER PRIMARY KEY,
            document_id INTEGER NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
            ordinal INTEGER NOT NULL,
            text TEXT NOT NULL,
            page INTEGER,
            char_start INTEGER NOT NULL,
            char_end INTEGER NOT NULL,
            heading TEXT
        )
        """
    )
    db.execute("CREATE INDEX chunks_document ON chunks (document_id, ordinal)")
    db.execute(
        """
        CREATE TABLE embeddings (
            chunk_id INTEGER PRIMARY KEY REFERENCES chunks(id) ON DELETE CASCADE,
            vector BLOB NOT NULL           -- little-endian float32, L2-normalised
        )
        """
    )
    # Porter stemming on unicode61 words: English queries match inflected forms.
    db.execute(
        """
        CREATE VIRTUAL TABLE chunks_fts USING fts5(
            text, heading, content='chunks', content_rowid='id',
            tokenize='porter unicode61 remove_diacritics 2'
        )
        """
    )
    db.execute(
        """
        CREATE TRIGGER chunks_ai AFTER INSERT ON chunks BEGIN
            INSERT INTO chunks_fts (rowid, text, heading) VALUES (new.id, new.text, new.heading);
        END
        """
    )
    db.execute(
        """
        CREATE TRIGGER chunks_ad AFTER DELETE ON chunks BEGIN
            INSERT INTO chunks_fts (chunks_fts, rowid, text, heading)
                VALUES ('delete', old.id, old.text, old.heading);
        END
        """
    )
    db.execute(
        """
        CREATE TRIGGER chunks_au AFTER UPDATE ON chunks BEGIN
            INSERT INTO chunks_fts (chunks_fts, rowid, text, heading)
                VALUES ('delete', old.id, old.text, old.heading);
            INSERT INTO chunks_fts (rowid, text, heading) VALUES (new.id, new.text, new.heading);
        END
        """
    )


@migration
def m002_folder_hidden_counts(db: sqlite_utils.Database) -> None:
    """How many hidden folders and files the last scan of each folder passed over."""
    db.execute("ALTER TABLE folders ADD COLUMN hidden_folders INTEGER NOT NULL DEFAULT 0")
    db.execute("ALTER TABLE folders ADD COLUMN hidden_files INTEGER NOT NULL DEFAULT 0")


@migration
def m003_document_fts(db: sqlite_utils.Database) -> None:
    """Whole-document BM25 (``document_fts``): each document's text, indexed by FTS5 beside chunks.

    Filled from the chunks already indexed, so an existing library searches with it at once.
    """
    db.execute(
        """
        CREATE TABLE document_texts (
            document_id INTEGER PRIMARY KEY REFERENCES documents(id) ON DELETE CASCADE,
            text TEXT NOT NULL             -- the chunks' text without their overlap
        )
        """
    )
    db.execute(
        """
        CREATE VIRTUAL TABLE documents_fts USING fts5(
            text, content='document_texts', content_rowid='document_id',
            tokenize='porter unicode61 remove_diacritics 2'
        )
        """
    )
    db.execute(
        """
        CREATE TRIGGER document_texts_ai AFTER INSERT ON document_texts BEGIN
            INSERT INTO documents_fts (rowid, text) VALUES (new.document_id, new.text);
        END
        """
    )
    db.execute(
        """
        CREATE TRIGGER document_texts_ad AFTER DELETE ON document_texts BEGIN
            INSERT INTO documents_fts (documents_fts, rowid, text)
                VALUES ('delete', old.document_id, old.text);
        END
        """
    )
    db.execute(
        """
        CREATE TRIGGER document_texts_au AFTER UPDATE ON document_texts BEGIN
            INSERT INTO documents_fts (documents_fts, rowid, text)
                VALUES ('delete', old.document_id, old.text);
            INSERT INTO documents_fts (rowid, text) VALUES (new.document_id, new.text);
        END
        """
    )
    # Whatever drops a chunk (re-index, skip, failure, rebuild, deletion) drops its document's
    # text; the sync writes it again with the new chunks, in the same transaction.
    db.execute(
        """
        CREATE TRIGGER chunks_ad_document AFTER DELETE ON chunks BEGIN
            DELETE FROM document_texts WHERE document_id = old.document_id;
        END
        """
    )
    write_all_document_texts(db)


@migration
def m004_parser_version(db: sqlite_utils.Database) -> None:
    """The parser version that last read each document (``parsers.version``); 1 for those read
    before it was recorded, so files skipped then are read again by today's parsers."""
    db.execute("ALTER TABLE documents ADD COLUMN parser_version INTEGER NOT NULL DEFAULT 1")
