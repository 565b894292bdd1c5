"""What ``Library.status`` reports of one collection: counts, failures, unreadable folders,
hidden entries passed over."""

from __future__ import annotations

import sqlite_utils

from .chunking import CHUNKER_VERSION
from .library_types import DOCUMENT_STATES, CollectionInfo, CollectionStatus, Failure, FolderWarning
from .reconcile import FOLDER_KIND, NOT_A_FOLDER_ROW


def collection_status(
    db: sqlite_utils.Database, info: CollectionInfo, current_embedder_id: str | None
) -> CollectionStatus:
    """The status of collection ``info``.

    Args:
        db: The library database.
        info: The collection.
        current_embedder_id: The id of the embedder the collection would use now (None when
            its model folder is gone), to tell whether the next sync rebuilds it.
    """
    counts: dict[str, int] = dict.fromkeys(DOCUMENT_STATES, 0)
    for state, count in db.execute(
        f"SELECT state, COUNT(*) FROM documents WHERE collection_id = ? AND {NOT_A_FOLDER_ROW} "
        "GROUP BY state",
        [info.id],
    ).fetchall():
        counts[state] = count
    chunks = db.execute(
        "SELECT COALESCE(SUM(chunk_count), 0) FROM documents WHERE collection_id = ?", [info.id]
    ).fetchone()[0]
    failures = [
        Failure(path=r[0], state=r[1], reason=r[2])
        for r in db.execute(
            "SELECT path, state, reason FROM documents WHERE collection_id = ? AND state "
            "IN ('failed', 'quarantined', 'skipped', 'unavailable') ORDER BY state, path",
            [info.id],
        ).fetchall()
    ]
    unreadable = [
        FolderWarning(path=r[0], cause=r[1] or "unknown cause", reason=r[2])
        for r in db.execute(
            "SELECT path, title, reason FROM documents WHERE collection_id = ? AND kind = ? "
            "ORDER BY path",
            [info.id, FOLDER_KIND],
        ).fetchall()
    ]
    hidden_folders, hidden_files = db.execute(
        "SELECT COALESCE(SUM(hidden_folders), 0), COALESCE(SUM(hidden_files), 0) FROM folders "
        "WHERE collection_id = ?",
        [info.id],
    ).fetchone()
    stale = info.embedder_id is not None and (
        info.chunker_version != CHUNKER_VERSION or info.embedder_id != current_embedder_id
    )
    return CollectionStatus(
        info.name, info.roots, counts, int(chunks), failures, info.embedder_id, stale, unreadable,
        hidden_folders=int(hidden_folders), hidden_files=int(hidden_files),
    )


def collection_bytes(db: sqlite_utils.Database, collection_id: int) -> int:
    """Bytes the collection's passages and vectors take in ``library.db`` (their text and
    vector blobs; SQLite's own page and index overhead comes on top)."""
    row = db.execute(
        "SELECT COALESCE(SUM(LENGTH(CAST(c.text AS BLOB))), 0), COALESCE(SUM(LENGTH(e.vector)), 0) "
        "FROM chunks c JOIN documents d ON d.id = c.document_id "
        "LEFT JOIN embeddings e ON e.chunk_id = c.id WHERE d.collection_id = ?",
        [collection_id],
    ).fetchone()
    return int(row[0]) + int(row[1])
