"""The models page: every model with its metadata and verified SHA-256; import, verify, load,
unload, and the model Bastion starts with; below, the LoRA adapters (``adapters_view``).

Catalog work (header reads, hashing, imports) runs in the files thread; loading runs in the core
thread, which owns the engine. A model that fails to load is reported and the previous model
stays loaded (the engine swaps only after a successful load).
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
    QProgressBar,
    QPushButton,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from bastion.desktop.errors import BastionError
from bastion.desktop.gui import core_tasks
from bastion.desktop.gui.backend import Backend
from bastion.desktop.gui.table_model import HeaderedTableModel, Index
from bastion.desktop.paths import data_paths
from bastion.models.catalog import ModelEntry, VerifyResult

SHA_LABELS = {
    "verified": "✔ verified",
    "mismatch": "✘ MISMATCH",
    "unrecorded": "no recorded hash",
    "unchecked": "not checked yet",
    "invalid": "invalid file",
    "missing": "file missing",
}


def _size(entry: ModelEntry) -> str:
    gib = entry.file_size / 2**30
    text = f"{gib:.2f} GB" if gib >= 1 else f"{entry.file_size / 2**20:.0f} MB"
    label = entry.info.size_label if entry.info else None
    return f"{label} · {text}" if label else text


class ModelsModel(HeaderedTableModel):
    """The catalog's entries, with which one is loaded and which is the default."""

    HEADERS = ("Model", "Architecture", "Size", "Quantization", "Context", "Chat template",
               "SHA-256", "Status")

    def __init__(self) -> None:
        super().__init__()
        self._entries: list[ModelEntry] = []
        self.loaded_path: Path | None = None
        self.default_spec: str | None = None

    def rows(self) -> list[ModelEntry]:
        return self._entries

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid() or not 0 <= index.row() < len(self._entries):
            return None
        entry = self._entries[index.row()]
        if role == Qt.ItemDataRole.ToolTipRole:
            sha = entry.sha256 or "not computed yet"
            own = entry.info.name if entry.info else None
            title = f"\nNamed inside the file: {own}" if own and own != entry.name else ""
            return (f"{entry.path}{title}\nSHA-256: {sha}"
                    + (f"\n{entry.error}" if entry.error else ""))
        if role != Qt.ItemDataRole.DisplayRole or not 0 <= index.column() < len(self.HEADERS):
            return None
        info = entry.info
        column = index.column()
        if column == 0:
            return entry.name
        if column == 1:
            return (info.architecture or "?") if info else "—"
        if column == 2:
            return _size(entry)
        if column == 3:
            return (info.quantization or "?") if info else "—"
        if column == 4:
            return f"{info.context_length:,}" if info and info.context_length else "?"
        if column == 5:
            if info is None:
                return "—"
            return "present" if info.chat_template else "missing (a generic one is used)"
        if column == 6:
            label = SHA_LABELS[entry.verified]
            return f"{label} · {entry.sha256[:12]}…" if entry.sha256 else label
        return self.status(entry)

    def status(self, entry: ModelEntry) -> str:
        parts = []
        if self.loaded_path is not None and entry.path.resolve() == self.loaded_path.resolve():
            parts.append("Loaded")
        if self.is_default(entry):
            parts.append("Default")
        if entry.error:
            parts.append("Not usable")
        return " · ".join(parts)

    def is_default(self, entry: ModelEntry) -> bool:
        if self.default_spec is None:
            return entry.is_default
        return self.default_spec in (entry.id, entry.path.name, str(entry.path))

    def set_entries(self, entries: list[ModelEntry]) -> None:
        self.beginResetModel()  # a refresh of a short list, never per token
        self._entries = list(entries)
        self.endResetModel()

    def entry(self, row: int) -> ModelEntry:
        return self._entries[row]

    def row_of(self, entry_id: str) -> int | None:
        return next((i for i, e in enumerate(self._entries) if e.id == entry_id), None)

    def set_marks(self, loaded: Path | None = None, default: str | None = None, *,
                  keep_default: bool = True) -> None:
        self.loaded_path = loaded
        if not keep_default:
            self.default_spec = default
        if self._entries:
            self.dataChanged.emit(self.index(0, 0),
                                  self.index(len(self._entries) - 1, len(self.HEADERS) - 1))


class ModelsView(QWidget):
    """Models, their checks, and loading."""

    def __init__(self, backend: Backend, window: Any, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.backend = backend
        self.window_ = window
        self.model = ModelsModel()
        self.last_verify: VerifyResult | None = None
        self.busy_with: str | None = None
        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 8, 8, 8)
        actions = QHBoxLayout()
        self.buttons: dict[str, QPushButton] = {}
        for key, text, slot in (
            ("import", "Import a GGUF file…", self._ask_import),
            ("verify", "Verify SHA-256", lambda: self._selected(lambda e: self.verify(e.id))),
            ("load", "Load", lambda: self._selected(self.load)),
            ("unload", "Unload", self.unload),
            ("default", "Use at start-up", lambda: self._selected(self.set_default)),
        ):
            button = QPushButton(text)
            button.setObjectName(f"models_{key}")
            button.clicked.connect(slot)
            actions.addWidget(button)
            self.buttons[key] = button
        actions.addStretch(1)
        layout.addLayout(actions)
        self.table = QTableView()
        self.table.setModel(self.model)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.verticalHeader().setVisible(False)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.table.horizontalHeader().setStretchLastSection(True)
        layout.addWidget(self.table, 1)
        self.message = QLabel("")
        self.message.setWordWrap(True)
        self.message.setObjectName("modelsMessage")
        layout.addWidget(self.message)
        self.progress = QProgressBar()
        self.progress.setVisible(False)
        layout.addWidget(self.progress)
        # Imported here: the adapters section reuses this module's labels.
        from bastion.desktop.gui.adapters_view import AdaptersSection

        self.adapters = AdaptersSection(backend, data_paths(create=False).adapters_dir)
        layout.addWidget(self.adapters, 1)
        window.model_loaded.connect(self._model_loaded)

    # -- listing ---------------------------------------------------------------------------

    def start(self) -> None:
        self.refresh(hash_files=True)
        self.adapters.start()

    def refresh(self, *, hash_files: bool = False) -> None:
        """Read the catalog (headers only), then hash what has no cached SHA-256 yet."""
        self.backend.run(self.backend.files, core_tasks.catalog_entries, "list the models",
                         on_result=self._entries)
        if hash_files:
            self._begin("Checking SHA-256 values…")
            self.backend.run(self.backend.files,
                             partial(core_tasks.catalog_entries, hash_files=True),
                             "check the models' SHA-256", on_yield=self._bytes,
                             on_result=self._entries, on_finished=self._end)

    def _entries(self, entries: list[ModelEntry]) -> None:
        selected = self._current()
        self.model.set_entries(entries)
        row = self.model.row_of(selected.id) if selected else None
        self.table.selectRow(row if row is not None else 0)

    def set_default_spec(self, spec: str | None) -> None:
        self.model.set_marks(self.model.loaded_path, spec, keep_default=False)

    def _model_loaded(self, info: Any) -> None:
        self.model.set_marks(info.path if info is not None else None)
        if self.busy_with == "load":
            self._end()

    def _current(self) -> ModelEntry | None:
        index = self.table.currentIndex()
        return self.model.entry(index.row()) if index.isValid() else None

    def _selected(self, action: Any) -> None:
        entry = self._current()
        if entry is not None:
            action(entry)

    # -- actions ---------------------------------------------------------------------------

    def _ask_import(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Import a model", "", "GGUF models (*.gguf)")
        if path:
            self.import_file(Path(path))

    def import_file(self, source: Path) -> None:
        """Copy ``source`` into the models folder, checked and hashed, with progress."""
        self._begin(f"Importing {source.name}…", "import")
        self.backend.run(self.backend.files,
                         partial(core_tasks.import_model_file, source=source),
                         f"import {source.name}", on_yield=self._bytes,
                         on_result=self._imported, on_finished=self._end)

    def _imported(self, entry: ModelEntry) -> None:
        self.message.setText(f"Imported {entry.name}: SHA-256 {entry.sha256} recorded.")
        self.refresh()

    def verify(self, entry_id: str) -> None:
        self._begin(f"Verifying {entry_id}…", "verify")
        self.backend.run(self.backend.files, partial(core_tasks.verify_model, entry_id=entry_id),
                         f"verify {entry_id}", on_yield=self._bytes,
                         on_result=self._verified, on_finished=self._end)

    def _verified(self, result: VerifyResult) -> None:
        self.last_verify = result
        self.message.setText(result.message)
        if not result.ok:
            self.backend.reporter.report(BastionError(result.message), f"verify {result.entry_id}")
        self.refresh()

    def load(self, entry: ModelEntry) -> None:
        """Load ``entry`` in the engine; on failure the previous model stays loaded."""
        if entry.error:
            self.backend.reporter.report(BastionError(entry.error), f"load {entry.name}")
            return
        self._begin(f"Loading {entry.name}…", "load")
        self.progress.setRange(0, 0)  # llama.cpp reports no fraction while loading
        self.window_.load_model(str(entry.path))

    def unload(self) -> None:
        self.backend.run(self.backend.core, core_tasks.unload_model, "unload the model",
                         on_result=lambda _r: self.window_.set_model_info(None))

    def set_default(self, entry: ModelEntry) -> None:
        spec = None if entry.origin == "embedded" else entry.id
        self.backend.run(self.backend.core, partial(core_tasks.set_default_model, spec=spec),
                         "choose the default model",
                         on_result=lambda settings: self._default_set(entry, settings))

    def _default_set(self, entry: ModelEntry, settings: Any) -> None:
        self.set_default_spec(settings.default_model)
        self.message.setText(f"{entry.name} will be loaded when Bastion starts.")

    # -- progress --------------------------------------------------------------------------

    def _begin(self, text: str, what: str = "hash") -> None:
        self.busy_with = what
        self.message.setText(text)
        self.progress.setRange(0, 100)
        self.progress.setValue(0)
        self.progress.setVisible(True)

    def _bytes(self, event: object) -> None:
        if isinstance(event, core_tasks.ByteProgress) and event.total:
            self.progress.setRange(0, 100)
            self.progress.setValue(int(100 * event.done / event.total))

    def _end(self) -> None:
        if self.busy_with == "hash":
            self.message.setText("")
        self.busy_with = None
        self.progress.setVisible(False)

