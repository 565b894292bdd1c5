"""The stat-only half of a sync: crash recovery, index identity and scan-versus-database.

Reconciling costs one ``stat`` per file: unchanged files (same size and mtime_ns) do no work;
everything else becomes a ``WorkItem`` that the pipeline confirms by SHA-256 before parsing.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import sqlite_utils

from .db import write_transaction
from .library_types import MAX_CRASHES
from .parsers.version import read_again
from .scan import FileStat, ScanResult, display_path, scan_root
from .stall_guard import Stalled, StallGuard

# States whose recorded hash describes the file: a touched-but-same file just updates its mtime.
SETTLED = frozenset({"indexed", "skipped", "failed", "quarantined"})

# ``documents.kind`` of a row that records a folder the scan could not read. Such a row is
# ``failed``, its ``reason`` is the sentence people read and its ``title`` the short cause
# ("permission denied") the status groups warnings by; it never has chunks and leaves the table
# as soon as the folder can be read again.
FOLDER_KIND = "folder"
NOT_A_FOLDER_ROW = "kind IS NOT 'folder'"
# The cause recorded for a folder whose walk stopped answering.
STALLED_CAUSE = "stopped answering"


@dataclass(frozen=True)
class WorkItem:
    """A file the pipeline must look at: new, changed, pending or retried."""

    doc_id: int
    path: str  # file-system string (surrogate escapes for non-UTF-8 names)
    display: str
    old_sha: str | None
    old_state: str
    stat: FileStat
    folder_id: int = 0  # the collection folder (root) it was found under
    root: str = ""


@dataclass(frozen=True)
class FolderRow:
    id: int
    root: str


def recover_interrupted(db: sqlite_utils.Database, collection_id: int) -> int:
    """Documents a crash left ``in_progress`` go back to pending, or to quarantine.

    A claim is committed before parsing and undone when the parser returns, so a document still
    claimed names what was being parsed when the process died.

    Returns:
        How many documents were quarantined.
    """
    now = time.time()
    with write_transaction(db):
        quarantined = db.execute(
            """
            UPDATE documents SET state = 'quarantined', updated_at = ?,
                reason = 'It stopped Bastion ' || attempts || ' times while being read, so it '
                      || 'is no longer tried. Replace or repair the file to index it again.'
            WHERE collection_id = ? AND state = 'in_progress' AND attempts >= ?
            """,
            [now, collection_id, MAX_CRASHES],
        ).rowcount
        db.execute(
            """
            UPDATE documents SET state = 'pending', updated_at = ?,
                reason = 'Interrupted while being indexed; it will be retried.'
            WHERE collection_id = ? AND state = 'in_progress'
            """,
            [now, collection_id],
        )
    return int(quarantined)


def ensure_identity(
    db: sqlite_utils.Database, collection_id: int, embedder_id: str, chunker_version: str
) -> bool:
    """Pin the collection to ``embedder_id`` and ``chunker_version``; rebuild it if they changed.

    Vectors of two models are never mixed: a change drops every chunk of the collection and
    sends its documents back to pending.

    Returns:
        True when the collection was reset for a rebuild.
    """
    row = db.execute(
        "SELECT embedder_id, chunker_version FROM collections WHERE id = ?", [collection_id]
    ).fetchone()
    if row is not None and row[0] == embedder_id and row[1] == chunker_version:
        return False
    rebuild = row is not None and row[0] is not None
    with write_transaction(db):
        if rebuild:
            db.execute(
                "DELETE FROM chunks WHERE document_id IN "
                "(SELECT id FROM documents WHERE collection_id = ?)",
                [collection_id],
            )
            db.execute(
                f"""
                UPDATE documents SET state = CASE WHEN state = 'unavailable' THEN state
                    ELSE 'pending' END,
                    prior_state = CASE WHEN state = 'unavailable' THEN 'pending' ELSE prior_state END,
                    sha256 = NULL, chunk_count = 0, attempts = 0,
                    reason = 'The embedding model or chunking changed; it will be re-indexed.'
                WHERE collection_id = ? AND {NOT_A_FOLDER_ROW}
                """,
                [collection_id],
            )
        db.execute(
            "UPDATE collections SET embedder_id = ?, chunker_version = ?, dimension = NULL, "
            "generation = generation + 1 WHERE id = ?",
            [embedder_id, chunker_version, collection_id],
        )
    return rebuild


def reconcile(
    db: sqlite_utils.Database, collection_id: int, *, include_hidden: bool = False
) -> list[WorkItem]:
    """Scan the collection's roots and bring ``documents`` up to date with what is on disk.

    New files are inserted as pending; vanished files leave the index; a missing root (or an
    unreadable folder) makes its documents ``unavailable``; a returning root restores them.
    A folder that cannot be read (and a root that cannot be reached) is recorded as a
    ``FOLDER_KIND`` row, so the status can say so instead of the folder vanishing silently.
    Hidden folders and files are passed over unless ``include_hidden``; each folder row keeps
    how many, and documents indexed from them before leave the index.

    Returns:
        The files that need a hash check, a parse or a retry.
    """
    folders = [
        FolderRow(r[0], os.fsdecode(r[1]))
        for r in db.execute(
            "SELECT id, root_bytes FROM folders WHERE collection_id = ? ORDER BY id", [collection_id]
        ).fetchall()
    ]
    scans = [(folder, _scan_bounded(folder.root, include_hidden)) for folder in folders]
    work: list[WorkItem] = []
    now = time.time()
    with write_transaction(db):
        for folder, scan in scans:
            work.extend(_reconcile_folder(db, collection_id, folder, scan, now))
    return work


def _scan_bounded(root: str, include_hidden: bool) -> ScanResult:
    """``scan_root`` on a helper thread; a walk that stops answering (a stalled network
    mount) makes the root unreachable for this sync instead of hanging it."""
    guard = StallGuard(name="bastion-scan")
    try:
        return guard.run(lambda tick: scan_root(root, include_hidden=include_hidden, tick=tick))
    except Stalled as stall:
        return ScanResult(root, available=False, unreadable={
            root: f"{STALLED_CAUSE} for {stall.seconds:g} s (a network drive that stalled?)"})
    finally:
        guard.close()


def _reconcile_folder(
    db: sqlite_utils.Database, collection_id: int, folder: FolderRow, scan: ScanResult, now: float
) -> list[WorkItem]:
    if not scan.available:
        cause = scan.unreadable.get(folder.root, "")
        why = cause if cause.startswith(STALLED_CAUSE) else "unplugged or removed?"
        db.execute(
            f"""
            UPDATE documents SET prior_state = state, state = 'unavailable', updated_at = ?,
                reason = ?
            WHERE folder_id = ? AND state != 'unavailable' AND {NOT_A_FOLDER_ROW}
            """,
            [now, f"The folder {display_path(folder.root)} cannot be reached ({why}). Its "
                  "documents are kept and come back when it returns.", folder.id],
        )
        _record_unreadable(db, collection_id, folder.id, scan.unreadable, {}, now)
        return []
    db.execute(
        "UPDATE folders SET hidden_folders = ?, hidden_files = ? WHERE id = ?",
        [scan.hidden_folders, scan.hidden_files, folder.id],
    )
    known = {
        bytes(r[1]): r
        for r in db.execute(
            "SELECT id, path_bytes, size, mtime_ns, sha256, state, prior_state, reason, kind, "
            "parser_version FROM documents "
            "WHERE folder_id = ?",
            [folder.id],
        ).fetchall()
    }
    work: list[WorkItem] = []
    for path, st in scan.files.items():
        key = os.fsencode(path)
        row = known.pop(key, None)
        if row is None:
            cursor = db.conn.execute(
                "INSERT INTO documents (collection_id, folder_id, path, path_bytes, state, "
                "updated_at) VALUES (?, ?, ?, ?, 'pending', ?)",
                [collection_id, folder.id, display_path(path), key, now],
            )
            work.append(WorkItem(int(cursor.lastrowid or 0), path, display_path(path), None,
                                 "pending", st, folder.id, folder.root))
            continue
        doc_id, _, size, mtime_ns, sha, state, prior, _, kind, parser_version = row
        if kind == FOLDER_KIND:  # a folder that could not be read is a file now
            db.execute(
                "UPDATE documents SET state = 'pending', reason = '', kind = NULL, title = NULL "
                "WHERE id = ?",
                [doc_id],
            )
            state = "pending"
        unchanged = size == st.size and mtime_ns == st.mtime_ns
        if state == "unavailable":
            # Only an indexed document comes back as it was; the others are looked at again,
            # since their reason was replaced by the unavailability notice.
            state = "indexed" if prior == "indexed" and unchanged else "pending"
            db.execute(
                "UPDATE documents SET state = ?, prior_state = NULL, updated_at = ?, reason = '' "
                "WHERE id = ?",
                [state, now, doc_id],
            )
        # Newer parsers may read it differently (``parsers.version``).
        outdated = read_again(state, kind, parser_version)
        if state in SETTLED and unchanged and not outdated:
            continue
        # An outdated file goes without its hash: the parse thread must not take the same bytes
        # for "nothing to do".
        work.append(WorkItem(doc_id, path, display_path(path), None if outdated else sha, state, st,
                             folder.id, folder.root))
    _record_refused(db, collection_id, folder.id, scan.refused, known, now)
    _record_unreadable(db, collection_id, folder.id, scan.unreadable, known, now)
    _drop_missing(db, folder, scan, known, now)
    return work


def folder_reason(cause: str) -> str:
    """The sentence recorded for a folder that could not be read."""
    return (
        f"This folder could not be read ({cause}); the files in it are not indexed until it "
        "can be. Documents indexed from it before are kept."
    )


def _record_unreadable(
    db: sqlite_utils.Database,
    collection_id: int,
    folder_id: int,
    unreadable: dict[str, str],
    known: dict[bytes, tuple[object, ...]],
    now: float,
) -> None:
    for path, cause in unreadable.items():
        key = os.fsencode(path)
        known.pop(key, None)
        # A file that turned into an unreadable folder loses its chunks.
        dropped = db.execute(
            f"DELETE FROM chunks WHERE document_id IN (SELECT id FROM documents WHERE "
            f"folder_id = ? AND path_bytes = ? AND {NOT_A_FOLDER_ROW})",
            [folder_id, key],
        ).rowcount
        if dropped:
            db.execute(
                "UPDATE collections SET generation = generation + 1 WHERE id = ?", [collection_id]
            )
        db.execute(
            """
            INSERT INTO documents (collection_id, folder_id, path, path_bytes, state, reason, kind,
                title, updated_at) VALUES (?, ?, ?, ?, 'failed', ?, ?, ?, ?)
            ON CONFLICT (folder_id, path_bytes) DO UPDATE SET state = 'failed',
                reason = excluded.reason, kind = excluded.kind, title = excluded.title,
                size = NULL, mtime_ns = NULL, sha256 = NULL, chunk_count = 0, prior_state = NULL,
                updated_at = excluded.updated_at
            WHERE documents.state != 'failed' OR documents.reason != excluded.reason
                OR documents.kind IS NOT excluded.kind
            """,
            [collection_id, folder_id, display_path(path), key, folder_reason(cause), FOLDER_KIND,
             cause, now],
        )


def _record_refused(
    db: sqlite_utils.Database,
    collection_id: int,
    folder_id: int,
    refused: dict[str, str],
    known: dict[bytes, tuple[object, ...]],
    now: float,
) -> None:
    for path, reason in refused.items():
        key = os.fsencode(path)
        row = known.pop(key, None)
        if row is None:
            db.execute(
                "INSERT INTO documents (collection_id, folder_id, path, path_bytes, state, reason, "
                "updated_at) VALUES (?, ?, ?, ?, 'skipped', ?, ?)",
                [collection_id, folder_id, display_path(path), key, reason, now],
            )
        elif row[5] != "skipped" or row[7] != reason:
            db.execute("DELETE FROM chunks WHERE document_id = ?", [row[0]])
            db.execute(
                "UPDATE documents SET state = 'skipped', reason = ?, size = NULL, mtime_ns = NULL, "
                "sha256 = NULL, chunk_count = 0, prior_state = NULL, kind = NULL, title = NULL, "
                "updated_at = ? WHERE id = ?",
                [reason, now, row[0]],
            )


def _drop_missing(
    db: sqlite_utils.Database,
    folder: FolderRow,
    scan: ScanResult,
    missing: dict[bytes, tuple[object, ...]],
    now: float,
) -> None:
    """Files no longer on disk leave the index, unless their folder just could not be listed.

    A row of a folder that could not be read before, and can be now, leaves as well.
    """
    unreadable = [os.fsencode(p) + b"/" for p in scan.unreadable]
    gone: list[int] = []
    for key, row in missing.items():
        doc_id = int(str(row[0]))
        if row[8] != FOLDER_KIND and any(key.startswith(prefix) for prefix in unreadable):
            db.execute(
                "UPDATE documents SET prior_state = CASE WHEN state = 'unavailable' THEN "
                "prior_state ELSE state END, state = 'unavailable', updated_at = ?, reason = "
                "'Its folder cannot be listed (permission denied?); kept until it can.' "
                "WHERE id = ?",
                [now, doc_id],
            )
        else:
            gone.append(doc_id)
    if gone:
        db.conn.executemany("DELETE FROM documents WHERE id = ?", [(i,) for i in gone])
        db.execute(
            "UPDATE collections SET generation = generation + 1 WHERE id = "
            "(SELECT collection_id FROM folders WHERE id = ?)",
            [folder.id],
        )


def mark_unavailable(
    db: sqlite_utils.Database, reason: str, *, folder_id: int | None = None,
    doc_id: int | None = None,
) -> int:
    """Make one document, or every document of a folder, ``unavailable`` with ``reason``.

    Chunks are kept (search leaves unavailable documents out) and the state they had is
    remembered, so a returning folder brings them back as the scan does. Call inside a
    transaction. Returns how many documents changed.
    """
    column, value = ("folder_id", folder_id) if folder_id is not None else ("id", doc_id)
    return int(db.execute(
        f"""
        UPDATE documents SET prior_state = state, state = 'unavailable', reason = ?,
            updated_at = ?
        WHERE {column} = ? AND state != 'unavailable' AND {NOT_A_FOLDER_ROW}
        """,
        [reason, time.time(), value],
    ).rowcount)
