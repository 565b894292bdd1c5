"""Table models of the library page: collections with live indexing progress, and the files of
one collection with their states and reasons."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

from PySide6.QtCore import QModelIndex, Qt

from bastion.desktop.gui.table_model import HeaderedTableModel, Index
from bastion.store.library_types import CollectionStatus, DocumentInfo, DocumentState, SyncProgress

RunState = Literal["idle", "queued", "indexing", "paused", "stopped"]

ROLE_NAME = Qt.ItemDataRole.UserRole + 1

RUN_LABELS: dict[RunState, str] = {
    "idle": "Up to date",
    "queued": "Waiting to index",
    "indexing": "Indexing",
    "paused": "Paused",
    "stopped": "Stopped (Sync to continue)",
}


# The file list's state filter: a label and the states it shows (None: every file).
FILE_FILTERS: tuple[tuple[str, tuple[DocumentState, ...] | None], ...] = (
    ("All files", None),
    ("Not indexed", ("failed", "quarantined", "skipped", "unavailable")),
    ("Indexed", ("indexed",)),
    ("Skipped", ("skipped",)),
    ("Failed", ("failed",)),
    ("Quarantined", ("quarantined",)),
    ("Waiting", ("pending", "in_progress")),
    ("Unavailable", ("unavailable",)),
)


def filter_label(index: int, counts: dict[str, int] | None) -> str:
    """The filter's label with how many files it shows ("Failed (3)"), when counts are known."""
    label, states = FILE_FILTERS[index]
    if counts is None:
        return label
    shown = sum(counts.values()) if states is None else sum(counts.get(s, 0) for s in states)
    return f"{label} ({shown:,})"


def format_eta(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def format_size(size: float) -> str:
    """``size`` bytes as "12.3 MiB"."""
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size:.0f} B"


def progress_text(progress: SyncProgress) -> str:
    """The page's line under the table while indexing: share of the bytes done, files, chunks
    embedded of those expected, the file at work with its time, what is left, and what was
    done before this sync."""
    if progress.phase == "scan":
        return f"Scanning {progress.collection}…"
    if progress.action == "loading":
        return f"Indexing {progress.collection}: {progress.current_label}"
    files = progress.files_before + progress.files_done
    total = progress.files_before + progress.files_total
    parts = [f"{progress.fraction:.0%}", f"{files:,} of {total:,} files"]
    if progress.chunks_note:
        parts.append(progress.chunks_note)
    if progress.current_label:
        parts.append(progress.current_label)
    if progress.eta_s is not None and progress.phase == "index":
        parts.append(f"{format_eta(progress.eta_s)} left")
    text = f"Indexing {progress.collection}: " + " · ".join(parts)
    return f"{text} ({progress.before_note})" if progress.before_note else text


@dataclass(frozen=True)
class CollectionRow:
    status: CollectionStatus
    progress: SyncProgress | None = None
    run: RunState = "idle"

    @property
    def name(self) -> str:
        return self.status.name

    def state_text(self) -> str:
        failed = sum(self.status.counts.get(s, 0) for s in ("failed", "quarantined"))
        text = RUN_LABELS[self.run]
        if self.run == "idle" and self.status.counts.get("pending"):
            text = "Not indexed yet"
        if self.run == "idle" and self.status.stale:
            text = "Needs re-indexing"
        if failed:
            text = f"{text} · {failed} failed"
        # Folders that could not be read are said on the row, not only in the file list.
        return " · ".join([text, *(f"⚠ {w}" for w in self.status.warnings)])


class CollectionsModel(HeaderedTableModel):
    """One row per collection; progress updates change one row."""

    HEADERS = ("Collection", "Files", "Chunks", "Progress", "Speed", "Time left", "State")

    def __init__(self) -> None:
        super().__init__()
        self._rows: list[CollectionRow] = []

    def rows(self) -> list[CollectionRow]:
        return self._rows

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid() or not 0 <= index.row() < len(self._rows):
            return None
        row = self._rows[index.row()]
        if role == ROLE_NAME:
            return row.name
        if role == Qt.ItemDataRole.ToolTipRole:
            folders = [f"{w.path}: {w.reason}" for w in row.status.unreadable_folders]
            hidden = [f"{row.status.hidden_note} (set index_hidden to index them)"] \
                if row.status.hidden_note else []
            return "\n".join([*row.status.roots, *folders, *hidden])
        if role != Qt.ItemDataRole.DisplayRole:
            return None
        counts, progress = row.status.counts, row.progress
        column = index.column()
        if column == 0:
            return row.name
        if column == 1:
            total = sum(counts.values())
            return f"{counts.get('indexed', 0)} of {total} indexed"
        if column == 2:
            return f"{row.status.chunks:,}"
        running = progress is not None and row.run == "indexing"
        if column == 3:
            if not running or progress is None:
                return ""
            if progress.phase == "scan":
                return "Scanning folders…"
            files = progress.files_before + progress.files_done
            total = progress.files_before + progress.files_total
            return f"{progress.fraction:.0%} · {files:,}/{total:,} files, {progress.chunks:,} chunks"
        if column == 4:
            if not running or progress is None or progress.phase != "index":
                return ""
            return (f"{format_size(progress.bytes_per_s)}/s, {progress.files_per_s:.1f} files/s, "
                    f"{progress.chunks_per_s:.0f} chunks/s")
        if column == 5:
            return format_eta(progress.eta_s) if running and progress is not None else ""
        if column == 6:
            return row.state_text()
        return None

    def names(self) -> list[str]:
        return [r.name for r in self._rows]

    def row_of(self, name: str) -> int | None:
        return next((i for i, r in enumerate(self._rows) if r.name == name), None)

    def status_of(self, name: str) -> CollectionStatus | None:
        row = self.row_of(name)
        return self._rows[row].status if row is not None else None

    def run_of(self, name: str) -> RunState | None:
        row = self.row_of(name)
        return self._rows[row].run if row is not None else None

    def progress_of(self, name: str) -> SyncProgress | None:
        row = self.row_of(name)
        return self._rows[row].progress if row is not None else None

    def set_statuses(self, statuses: Sequence[CollectionStatus]) -> None:
        """Merge fresh statuses: rows change, appear or go, keeping progress and run state."""
        fresh = {s.name: s for s in statuses}
        for i in range(len(self._rows) - 1, -1, -1):
            if self._rows[i].name not in fresh:
                self.beginRemoveRows(QModelIndex(), i, i)
                del self._rows[i]
                self.endRemoveRows()
        for status in sorted(statuses, key=lambda s: s.name.lower()):
            row = self.row_of(status.name)
            if row is None:
                position = sum(1 for r in self._rows if r.name.lower() < status.name.lower())
                self.beginInsertRows(QModelIndex(), position, position)
                self._rows.insert(position, CollectionRow(status))
                self.endInsertRows()
            else:
                self._update(row, status=status)

    def set_progress(self, progress: SyncProgress) -> None:
        row = self.row_of(progress.collection)
        if row is not None:
            self._update(row, progress=progress,
                         run="indexing" if progress.phase != "done" else self._rows[row].run)

    def set_run(self, name: str, run: RunState) -> None:
        row = self.row_of(name)
        if row is not None:
            self._update(row, run=run)

    def _update(self, row: int, **changes: Any) -> None:
        self._rows[row] = replace(self._rows[row], **changes)
        self.dataChanged.emit(self.index(row, 0), self.index(row, len(self.HEADERS) - 1))


class DocumentsModel(HeaderedTableModel):
    """The files of one collection: name, folder, state, chunks, reason."""

    HEADERS = ("File", "State", "Chunks", "Reason", "Folder")

    def __init__(self) -> None:
        super().__init__()
        self._docs: list[DocumentInfo] = []

    def rows(self) -> list[DocumentInfo]:
        return self._docs

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid() or not 0 <= index.row() < len(self._docs):
            return None
        doc = self._docs[index.row()]
        if role == Qt.ItemDataRole.ToolTipRole:
            return f"{doc.path}\n{doc.reason}" if doc.reason else doc.path
        if role != Qt.ItemDataRole.DisplayRole:
            return None
        path = Path(doc.path)
        return (path.name, doc.state.replace("_", " "), str(doc.chunk_count), doc.reason or "",
                str(path.parent))[index.column()] if 0 <= index.column() < 5 else None

    def set_documents(self, documents: Sequence[DocumentInfo]) -> None:
        self.beginResetModel()
        self._docs = list(documents)
        self.endResetModel()

    def document(self, row: int) -> DocumentInfo:
        return self._docs[row]
