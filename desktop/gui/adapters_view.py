"""The Adapters section of the models page: LoRA adapters, the base each fits, their verified
SHA-256; import, verify and remove.

Everything that touches files (header reads, checks against the models, hashing, copying,
deleting) runs in the files thread through ``adapter_tasks``; failures reach the one error
reporter with the core's message ("this adapter is for a model with hidden size 896; …").
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QAbstractItemView,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from bastion.desktop.errors import BastionError
from bastion.desktop.gui import adapter_tasks, core_tasks
from bastion.desktop.gui.backend import Backend
from bastion.desktop.gui.models_view import SHA_LABELS
from bastion.desktop.gui.table_model import HeaderedTableModel, Index
from bastion.models.adapter_catalog import AdapterEntry
from bastion.models.catalog import VerifyResult


def _size(size: int) -> str:
    return f"{size / 2**20:.1f} MB" if size >= 2**20 else f"{size / 2**10:.0f} KB"


class AdaptersModel(HeaderedTableModel):
    """The adapters folder's entries (a short list, reset on each refresh)."""

    HEADERS = ("Adapter", "Architecture", "Rank", "Adapts", "Fits", "Size", "SHA-256", "Status")

    def __init__(self) -> None:
        super().__init__()
        self._entries: list[AdapterEntry] = []

    def rows(self) -> list[AdapterEntry]:
        return self._entries

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid() or not 0 <= index.row() < len(self._entries):
            return None
        entry = self._entries[index.row()]
        if role == Qt.ItemDataRole.ToolTipRole:
            lines = [str(entry.path), f"SHA-256: {entry.sha256 or 'not computed yet'}"]
            if entry.info is not None and entry.info.base_name:
                lines.append(f"Names as its base: {entry.info.base_name}")
            return "\n".join(lines + ([entry.error] if entry.error else []))
        if role != Qt.ItemDataRole.DisplayRole or not 0 <= index.column() < len(self.HEADERS):
            return None
        info, base = entry.info, entry.base
        column = index.column()
        if column == 0:
            return entry.id
        if column == 5:
            return _size(entry.file_size)
        if column == 6:
            label = SHA_LABELS[entry.verified]
            return f"{label} · {entry.sha256[:12]}…" if entry.sha256 else label
        if column == 7:
            return "Not usable" if entry.error else ""
        if info is None:
            return "—"
        if column == 1:
            return info.architecture
        if column == 2:
            return ", ".join(str(rank) for rank in info.ranks) or "?"
        if column == 3:
            return ", ".join(info.targets)
        if base is None:
            return "not recorded"
        return f"{base.model} ({base.n_embd} wide, {base.n_layer} layers)"

    def set_entries(self, entries: list[AdapterEntry]) -> None:
        self.beginResetModel()
        self._entries = list(entries)
        self.endResetModel()

    def entry(self, row: int) -> AdapterEntry:
        return self._entries[row]

    def row_of(self, entry_id: str) -> int | None:
        return next((i for i, e in enumerate(self._entries) if e.id == entry_id), None)


class AdaptersSection(QWidget):
    """LoRA adapters: listing, import (checked against the models), verify, remove."""

    def __init__(self, backend: Backend, adapters_dir: Path, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.backend = backend
        self.adapters_dir = adapters_dir
        self.model = AdaptersModel()
        self.last_verify: VerifyResult | None = None
        self.busy_with: str | None = None
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 8, 0, 0)
        title = QLabel("<b>LoRA adapters</b> — attached to a model per chat, checked against the "
                       "model they were trained for")
        layout.addWidget(title)
        actions = QHBoxLayout()
        self.buttons: dict[str, QPushButton] = {}
        for key, text, slot in (
            ("import", "Import an adapter…", self._ask_import),
            ("verify", "Verify SHA-256", lambda: self._selected(lambda e: self.verify(e.id))),
            ("remove", "Remove…", lambda: self._selected(self._ask_remove)),
        ):
            button = QPushButton(text)
            button.setObjectName(f"adapters_{key}")
            button.clicked.connect(slot)
            actions.addWidget(button)
            self.buttons[key] = button
        actions.addStretch(1)
        layout.addLayout(actions)
        self.table = QTableView()
        self.table.setObjectName("adaptersTable")
        self.table.setModel(self.model)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.verticalHeader().setVisible(False)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.table.horizontalHeader().setStretchLastSection(True)
        layout.addWidget(self.table, 1)
        self.message = QLabel("")
        self.message.setWordWrap(True)
        self.message.setObjectName("adaptersMessage")
        layout.addWidget(self.message)
        self.progress = QProgressBar()
        self.progress.setVisible(False)
        layout.addWidget(self.progress)

    # -- listing ---------------------------------------------------------------------------

    def start(self) -> None:
        self.refresh(hash_files=True)

    def refresh(self, *, hash_files: bool = False) -> None:
        """Read the adapters (headers only), then hash what has no cached SHA-256 yet."""
        self.backend.run(self.backend.files,
                         partial(adapter_tasks.adapter_entries, adapters_dir=self.adapters_dir),
                         "list the adapters", on_result=self._entries)
        if hash_files:
            self._begin("Checking the adapters' SHA-256 values…")
            self.backend.run(self.backend.files,
                             partial(adapter_tasks.adapter_entries, adapters_dir=self.adapters_dir,
                                     hash_files=True),
                             "check the adapters' SHA-256", on_yield=self._bytes,
                             on_result=self._entries, on_finished=self._end)

    def _entries(self, entries: list[AdapterEntry]) -> None:
        selected = self._current()
        self.model.set_entries(entries)
        row = self.model.row_of(selected.id) if selected else None
        if entries:
            self.table.selectRow(row if row is not None else 0)

    def _current(self) -> AdapterEntry | None:
        index = self.table.currentIndex()
        return self.model.entry(index.row()) if index.isValid() else None

    def _selected(self, action: Any) -> None:
        entry = self._current()
        if entry is not None:
            action(entry)

    # -- actions ---------------------------------------------------------------------------

    def _ask_import(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Import a LoRA adapter", "",
                                              "GGUF adapters (*.gguf)")
        if path:
            self.import_file(Path(path))

    def import_file(self, source: Path, base: str | None = None) -> None:
        """Check ``source`` against the models (or ``base``) and copy it in, with progress."""
        self._begin(f"Checking and importing {source.name}…", "import")
        self.backend.run(self.backend.files,
                         partial(adapter_tasks.import_adapter_file, adapters_dir=self.adapters_dir,
                                 source=source, base=base),
                         f"import the adapter {source.name}", on_yield=self._bytes,
                         on_result=self._imported, on_finished=self._end)

    def _imported(self, entry: AdapterEntry) -> None:
        fits = f"; it fits {entry.base.model}" if entry.base else ""
        self.message.setText(f"Imported the adapter {entry.id}{fits}. SHA-256 {entry.sha256} "
                             "recorded.")
        self.refresh()

    def verify(self, name: str) -> None:
        self._begin(f"Verifying {name}…", "verify")
        self.backend.run(self.backend.files,
                         partial(adapter_tasks.verify_adapter, adapters_dir=self.adapters_dir,
                                 name=name),
                         f"verify the adapter {name}", on_yield=self._bytes,
                         on_result=self._verified, on_finished=self._end)

    def _verified(self, result: VerifyResult) -> None:
        self.last_verify = result
        self.message.setText(result.message)
        if not result.ok:
            self.backend.reporter.report(BastionError(result.message),
                                         f"verify the adapter {result.entry_id}")
        self.refresh()

    def _ask_remove(self, entry: AdapterEntry) -> None:
        answer = QMessageBox.question(
            self, "Remove adapter",
            f"Remove the adapter “{entry.id}”? Its file is deleted from the adapters folder; "
            "chats that used it answer without it.",
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.Cancel,
            QMessageBox.StandardButton.Cancel)
        if answer == QMessageBox.StandardButton.Yes:
            self.remove_adapter(entry.id)

    def remove_adapter(self, name: str) -> None:
        """Delete the adapter ``name`` and its record."""
        self.backend.run(self.backend.files,
                         partial(adapter_tasks.remove_adapter, adapters_dir=self.adapters_dir,
                                 name=name),
                         f"remove the adapter {name}", on_result=self._removed)

    def _removed(self, entry: AdapterEntry) -> None:
        self.message.setText(f"Removed the adapter {entry.id}.")
        self.refresh()

    # -- progress --------------------------------------------------------------------------

    def _begin(self, text: str, what: str = "hash") -> None:
        self.busy_with = what
        self.message.setText(text)
        self.progress.setRange(0, 100)
        self.progress.setValue(0)
        self.progress.setVisible(True)

    def _bytes(self, event: object) -> None:
        if isinstance(event, core_tasks.ByteProgress) and event.total:
            self.progress.setValue(int(100 * event.done / event.total))

    def _end(self) -> None:
        if self.busy_with == "hash":
            self.message.setText("")
        self.busy_with = None
        self.progress.setVisible(False)
