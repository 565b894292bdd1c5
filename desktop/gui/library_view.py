"""The library page: collections of folders, live indexing progress, and every file's state.

Indexing runs in the library thread, one collection at a time. Pause and Cancel both stop the
run at its next progress event (work already committed is kept, so nothing is redone); Pause
offers Resume, Cancel leaves the remaining files for the next Sync.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

from PySide6.QtCore import QItemSelectionModel, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QSplitter,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from bastion.desktop.gui import core_tasks
from bastion.desktop.gui.backend import Backend
from bastion.desktop.gui.library_models import (
    FILE_FILTERS,
    CollectionsModel,
    DocumentsModel,
    RunState,
    filter_label,
    progress_text,
)
from bastion.desktop.gui.workers import Job
from bastion.store.library_types import SyncProgress

_BAR_STEPS = 1000


class AddFolderDialog(QDialog):
    """Choose a folder's collection: a new one (named after the folder) or an existing one."""

    NEW = "＋ New collection"

    def __init__(self, folder: Path, existing: list[str], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Add a folder")
        form = QFormLayout(self)
        form.addRow("Folder:", QLabel(str(folder)))
        self.target = QComboBox()
        self.target.addItem(self.NEW)
        self.target.addItems(existing)
        form.addRow("Add to:", self.target)
        self.name = QLineEdit(folder.name or "Documents")
        form.addRow("New collection name:", self.name)
        self.target.currentIndexChanged.connect(lambda i: self.name.setEnabled(i == 0))
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok
                                   | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        form.addRow(buttons)

    def collection(self) -> str:
        return self.name.text().strip() if self.target.currentIndex() == 0 else self.target.currentText()


class LibraryView(QWidget):
    """Collections, their progress and their files."""

    collections_changed = Signal(list)
    status_text = Signal(str)

    def __init__(self, backend: Backend, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.backend = backend
        self.model = CollectionsModel()
        self.documents = DocumentsModel()
        self.sync_job: Job | None = None
        self.syncing: str | None = None
        self._queue: list[str] = []
        self._stop_as: dict[str, RunState] = {}
        self._select_next: str | None = None
        self._build()
        self.model.dataChanged.connect(lambda *_: self._update_buttons())

    def _build(self) -> None:
        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 8, 8, 8)
        actions = QHBoxLayout()
        self.buttons: dict[str, QPushButton] = {}
        for key, text, slot in (
            ("add", "Add folder…", self._ask_add),
            ("sync", "Sync", lambda: self._on_selected(self.sync)),
            ("pause", "Pause", self.pause),
            ("resume", "Resume", lambda: self._on_selected(self.sync)),
            ("cancel", "Cancel", self.cancel),
            ("remove", "Remove…", lambda: self._on_selected(self._ask_remove)),
        ):
            button = QPushButton(text)
            button.setObjectName(f"library_{key}")
            button.clicked.connect(slot)
            actions.addWidget(button)
            self.buttons[key] = button
        actions.addStretch(1)
        layout.addLayout(actions)

        splitter = QSplitter()
        splitter.setOrientation(splitter.orientation().Vertical)
        self.table = QTableView()
        self.table.setModel(self.model)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.verticalHeader().setVisible(False)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.selectionModel().currentRowChanged.connect(lambda *_: self._selection_changed())
        splitter.addWidget(self.table)

        lower = QWidget()
        column = QVBoxLayout(lower)
        column.setContentsMargins(0, 0, 0, 0)
        self.progress = QProgressBar()
        self.progress.setVisible(False)
        self.progress_label = QLabel("")
        column.addWidget(self.progress_label)
        column.addWidget(self.progress)
        header = QHBoxLayout()
        self.documents_label = QLabel("Files")
        self.state_filter = QComboBox()
        self.state_filter.setObjectName("library_state_filter")
        self.state_filter.setToolTip("Show only the files in this state")
        self.state_filter.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToContents)
        for index in range(len(FILE_FILTERS)):
            self.state_filter.addItem(filter_label(index, None))
        self.state_filter.currentIndexChanged.connect(lambda _i: self.refresh_documents())
        header.addWidget(self.documents_label, 1)
        header.addWidget(QLabel("Show:"))
        header.addWidget(self.state_filter)
        column.addLayout(header)
        self.documents_table = QTableView()
        self.documents_table.setModel(self.documents)
        self.documents_table.verticalHeader().setVisible(False)
        columns = self.documents_table.horizontalHeader()
        columns.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        columns.setSectionResizeMode(3, QHeaderView.ResizeMode.Stretch)  # the reason
        self.documents_table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        column.addWidget(self.documents_table, 1)
        splitter.addWidget(lower)
        layout.addWidget(splitter, 1)
        self._update_buttons()

    # -- status ----------------------------------------------------------------------------

    def start(self) -> None:
        self.refresh()

    def refresh(self) -> None:
        self.backend.run(self.backend.library, core_tasks.library_status,
                         "read the library", on_result=self._statuses)

    def _statuses(self, statuses: list[Any]) -> None:
        self.model.set_statuses(statuses)
        self.collections_changed.emit(self.model.names())
        wanted, self._select_next = self._select_next, None
        if wanted is not None and wanted in self.model.names():
            self.select(wanted)
        elif self.selected() is None and self.model.rowCount():
            self.select(self.model.names()[0])
        self._update_buttons()
        self.refresh_documents()
        self._summary()

    def selected(self) -> str | None:
        index = self.table.currentIndex()
        return self.model.names()[index.row()] if index.isValid() else None

    def select(self, name: str) -> None:
        row = self.model.row_of(name)
        if row is not None:
            self.table.selectionModel().setCurrentIndex(
                self.model.index(row, 0),
                QItemSelectionModel.SelectionFlag.ClearAndSelect | QItemSelectionModel.SelectionFlag.Rows)

    def _on_selected(self, action: object) -> None:
        name = self.selected()
        if name is not None:
            action(name)  # type: ignore[operator]

    def _selection_changed(self) -> None:
        self._update_buttons()
        self.refresh_documents()

    def _update_filter_labels(self) -> None:
        name = self.selected()
        status = self.model.status_of(name) if name is not None else None
        for index in range(len(FILE_FILTERS)):
            self.state_filter.setItemText(index, filter_label(index, status.counts if status else None))

    def refresh_documents(self) -> None:
        name = self.selected()
        status = self.model.status_of(name) if name is not None else None
        self._update_filter_labels()
        if name is None:
            self.documents.set_documents([])
            self.documents_label.setText("Files")
            return
        label, states = FILE_FILTERS[max(self.state_filter.currentIndex(), 0)]
        hidden = f" ({status.hidden_note}, not listed)" if status and status.hidden_note else ""
        self.documents_label.setText(
            f"Files of {name}" + (f": {label.lower()}" if states else "") + hidden)
        self.backend.run(self.backend.library,
                         partial(core_tasks.collection_documents, name=name, states=states),
                         "list the collection's files",
                         on_result=partial(self._documents, name),
                         on_error=lambda _e: False)  # the collection was removed meanwhile

    def _documents(self, name: str, docs: list[Any]) -> None:
        if name == self.selected():
            self.documents.set_documents(docs)

    # -- actions ---------------------------------------------------------------------------

    def _ask_add(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Choose a folder of documents")
        if not folder:
            return
        dialog = AddFolderDialog(Path(folder), self.model.names(), self)
        if dialog.exec() == QDialog.DialogCode.Accepted and dialog.collection():
            self.add_folder(Path(folder), dialog.collection())

    def add_folder(self, folder: Path, collection: str) -> None:
        """Add ``folder`` to ``collection`` (created if new) and index it."""
        self.backend.run(self.backend.library,
                         partial(core_tasks.add_folder, name=collection, folder=folder),
                         "add the folder", on_result=self._added)

    def _added(self, name: str) -> None:
        self._select_next = name
        self.refresh()
        self.sync(name)

    def sync(self, name: str) -> None:
        """Index ``name`` now, or after the collection being indexed."""
        if name == self.syncing or name in self._queue:
            return
        self._queue.append(name)
        self.model.set_run(name, "queued")
        self._next()

    def _next(self) -> None:
        if self.sync_job is not None or not self._queue:
            self._update_buttons()
            return
        name = self._queue.pop(0)
        self.syncing = name
        self.model.set_run(name, "indexing")
        self.progress.setVisible(True)
        self.progress.setRange(0, 0)
        self.sync_job = self.backend.run(
            self.backend.library, partial(core_tasks.sync_collection, name=name),
            f"index {name}", on_yield=self._progress, on_finished=self._sync_finished)
        self._update_buttons()

    def _progress(self, event: object) -> None:
        if isinstance(event, core_tasks.SyncSnapshot):
            self._snapshot(event)
            return
        if not isinstance(event, SyncProgress):
            return
        self.model.set_progress(event)
        if event.phase == "index" and (event.files_total or event.bytes_total):
            # By bytes: a 400-page report weighs what it costs, not one file of 3,633.
            self.progress.setRange(0, _BAR_STEPS)
            self.progress.setValue(round(event.fraction * _BAR_STEPS))
        self.progress_label.setText(progress_text(event))
        self._summary()

    def _snapshot(self, snapshot: core_tasks.SyncSnapshot) -> None:
        """Counts and files as they stand mid-sync (the library thread is busy until its end)."""
        self.model.set_statuses(snapshot.statuses)
        self._update_filter_labels()
        if snapshot.collection == self.selected():
            states = FILE_FILTERS[max(self.state_filter.currentIndex(), 0)][1]
            docs = [d for d in snapshot.documents if states is None or d.state in states]
            # The list is rebuilt every few seconds: keep the reader where they were.
            scroll = self.documents_table.verticalScrollBar()
            position = scroll.value()
            self.documents.set_documents(docs)
            scroll.setValue(position)
        self._summary()

    def _sync_finished(self) -> None:
        name, self.syncing, self.sync_job = self.syncing, None, None
        if name is not None:
            self.model.set_run(name, self._stop_as.pop(name, "idle"))
        self.progress.setVisible(False)
        self.progress_label.setText("")
        self.refresh()
        self._next()

    def pause(self) -> None:
        self._stop("paused")

    def cancel(self) -> None:
        self._stop("stopped")

    def _stop(self, run: RunState) -> None:
        name = self.selected()
        if name in self._queue:
            self._queue.remove(name)
            self.model.set_run(name, run)
        elif self.sync_job is not None and self.syncing is not None and name in (None, self.syncing):
            self._stop_as[self.syncing] = run
            self.sync_job.cancel()
        self._update_buttons()

    def _ask_remove(self, name: str) -> None:
        answer = QMessageBox.question(
            self, "Remove collection",
            f"Remove the collection “{name}” and its index? Your files are not touched; chats "
            "that used it will no longer find its passages.",
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.Cancel,
            QMessageBox.StandardButton.Cancel)
        if answer == QMessageBox.StandardButton.Yes:
            self.remove_collection(name)

    def remove_collection(self, name: str) -> None:
        """Forget ``name`` (after stopping its indexing; the library thread runs jobs in order)."""
        if name in self._queue:
            self._queue.remove(name)
        if self.syncing == name and self.sync_job is not None:
            self.sync_job.cancel()
        self.backend.run(self.backend.library, partial(core_tasks.remove_collection, name=name),
                         f"remove {name}", on_result=lambda _n: self.refresh())

    def _update_buttons(self) -> None:
        name = self.selected()
        run = self.model.run_of(name) if name else None
        self.buttons["sync"].setEnabled(name is not None and run in ("idle", "stopped"))
        self.buttons["pause"].setEnabled(run in ("indexing", "queued"))
        self.buttons["cancel"].setEnabled(run in ("indexing", "queued"))
        self.buttons["resume"].setEnabled(run == "paused")
        self.buttons["remove"].setEnabled(name is not None)

    def _summary(self) -> None:
        if self.syncing is not None:
            progress = self.model.progress_of(self.syncing)
            if progress is not None and progress.phase == "index":
                self.status_text.emit(f"Indexing {self.syncing}: {progress.fraction:.0%}, "
                                      f"{progress.files_before + progress.files_done:,}/"
                                      f"{progress.files_before + progress.files_total:,} files")
                return
            self.status_text.emit(f"Indexing {self.syncing}…")
            return
        self.status_text.emit(f"{self.model.rowCount()} collection"
                              f"{'s' if self.model.rowCount() != 1 else ''}")
