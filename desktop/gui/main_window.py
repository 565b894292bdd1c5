"""The main window: chat, library, models, fine-tune, lab and settings pages, and a status bar that
always says which model is loaded and how fast the last answer was."""

from __future__ import annotations

import contextlib
import importlib
import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QEvent, QObject, Qt, QTimer, Signal
from PySide6.QtGui import QCloseEvent, QWindow
from PySide6.QtWidgets import QLabel, QMainWindow, QTabWidget, QWidget

from bastion.desktop.gui import core_tasks
from bastion.desktop.gui.backend import Backend
from bastion.desktop.gui.chat_view import ChatView
from bastion.models.engine_types import LoadInfo

if TYPE_CHECKING:
    from bastion.desktop.gui.lab_view import LabView

log = logging.getLogger(__name__)

FIRST_EXPOSE_WAIT_MS = 1000


class _FirstExpose(QObject):
    """Calls ``then`` once, on the first turn of the event loop after ``window`` is exposed
    (Qt paints a widget window while handling its expose event), or when ``fire`` is called."""

    def __init__(self, window: QWindow, then: Callable[[], None]) -> None:
        super().__init__(window)
        self.window, self.then, self.done = window, then, False
        window.installEventFilter(self)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if event.type() == QEvent.Type.Expose and self.window.isExposed():
            QTimer.singleShot(0, self, self.fire)
        return False

    def fire(self) -> None:
        if not self.done:
            self.done = True
            self.window.removeEventFilter(self)
            self.then()


# The modules of the pages ``start`` adds after the chat; each is optional (``_add_pages``).
PAGE_MODULES = tuple(f"bastion.desktop.gui.{name}" for name in (
    "library_view", "models_view", "finetune_view", "lab_view", "settings_view"))


class _PageImports(QObject):
    """Imports the page modules in a thread of its own, then says so in the GUI thread:
    building the pages is then quick. Not on the library thread, which may be opening (or
    upgrading) a large library at start."""

    done = Signal()

    def start(self) -> None:
        threading.Thread(target=self._run, name="bastion-page-imports", daemon=True).start()

    def _run(self) -> None:
        for name in PAGE_MODULES:
            try:
                importlib.import_module(name)
            except Exception as error:  # the page is left out (``_add_pages``); the chat works
                log.warning("page module %s cannot be imported: %s", name, error)
        with contextlib.suppress(RuntimeError):  # the window was closed and deleted meanwhile
            self.done.emit()


class MainWindow(QMainWindow):
    """Bastion's window over a started-or-not ``Backend``."""

    model_loaded = Signal(object)  # LoadInfo | None
    # The library, models, fine-tune, lab and settings pages are built (``start`` adds them
    # once their modules are imported off this thread).
    pages_added = Signal()
    # Start-up's background work is over: the embedder is imported and the model, queued
    # before it on the same thread, has loaded or failed.
    warmed_up = Signal()

    def __init__(self, backend: Backend, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.backend = backend
        self.setWindowTitle("Bastion")
        self.resize(1120, 760)
        self.snapshot: core_tasks.CoreSnapshot | None = None
        self.model_info: LoadInfo | None = None
        self.closed_cleanly: bool | None = None

        self.tabs = QTabWidget()
        self.tabs.setDocumentMode(True)
        self.chat_view = ChatView(backend)
        self.tabs.addTab(self.chat_view, "Chat")
        self.pages: dict[str, Any] = {"chat": self.chat_view}
        # The other pages (and pyqtgraph, the lab, ...) are built by ``start``: the chat alone
        # is enough to show the window, and a user sees it a second or two sooner.
        self._pages_added = False
        self.pages_ready = False  # built and started (see ``pages_added``)
        self._started = False
        self.setCentralWidget(self.tabs)

        self.model_label = QLabel("Starting…")
        self.model_label.setObjectName("modelStatus")
        self.speed_label = QLabel("")
        self.speed_label.setObjectName("speedStatus")
        self.library_label = QLabel("")
        self.library_label.setObjectName("libraryStatus")
        bar = self.statusBar()
        bar.addPermanentWidget(self.library_label)
        bar.addPermanentWidget(self.speed_label)
        bar.addPermanentWidget(self.model_label)
        self.chat_view.status_message.connect(lambda text: bar.showMessage(text, 5000))
        self.chat_view.answer_finished.connect(self._show_speed)

    def _add_pages(self) -> None:
        """Library, models, fine-tune, lab and settings pages (each optional so the chat works
        alone: a page whose module cannot be imported is left out)."""
        if self._pages_added:
            return
        self._pages_added = True
        try:
            from bastion.desktop.gui.library_view import LibraryView
        except ImportError:
            pass
        else:
            self.library_view = LibraryView(self.backend)
            self.library_view.collections_changed.connect(self.chat_view.set_collection_names)
            self.library_view.status_text.connect(lambda text: self.library_label.setText(text))
            self.tabs.addTab(self.library_view, "Library")
            self.pages["library"] = self.library_view
        try:
            from bastion.desktop.gui.models_view import ModelsView
        except ImportError:
            pass
        else:
            self.models_view = ModelsView(self.backend, self)
            # The chat header offers the adapters the Models page lists, kept in step with its
            # imports and removals (each refresh resets the list).
            adapters = self.models_view.adapters.model
            adapters.modelReset.connect(
                lambda: self.chat_view.set_adapter_entries(adapters.rows()))
            self.tabs.addTab(self.models_view, "Models")
            self.pages["models"] = self.models_view
        try:
            from bastion.desktop.gui.finetune_view import FinetuneView
        except ImportError:
            pass
        else:
            from bastion.desktop.paths import data_paths

            self.finetune_view = FinetuneView(self.backend, data_paths(create=False))
            models_view = self.pages.get("models")
            if models_view is not None:
                # Trainable bases come from the Models page's list; what a run or a merge adds
                # to the catalog shows up there (and so in the chat header) at once.
                models = models_view.model
                models.modelReset.connect(lambda: self.finetune_view.set_models(models.rows()))
                self.finetune_view.adapter_registered.connect(
                    lambda _entry: models_view.adapters.refresh())
                self.finetune_view.model_merged.connect(lambda _path: models_view.refresh())
            library_view = self.pages.get("library")
            if library_view is not None:  # grounded training retrieves from a collection
                library_view.collections_changed.connect(self.finetune_view.set_collection_names)
            self.tabs.addTab(self.finetune_view, "Fine-tune")
            self.pages["finetune"] = self.finetune_view
        try:
            from bastion.desktop.gui.lab_view import LabView
        except ImportError:
            pass
        else:
            self._add_lab_page(LabView)
        try:
            from bastion.desktop.gui.settings_view import SettingsView
        except ImportError:
            pass
        else:
            self.settings_view = SettingsView(self.backend, self)
            self.tabs.addTab(self.settings_view, "Settings")
            self.pages["settings"] = self.settings_view

    def _add_lab_page(self, lab_view_class: type[LabView]) -> None:
        from bastion.desktop.paths import data_paths

        self.lab_view = lab_view_class(self.backend, data_paths(create=False))
        library_view = self.pages.get("library")
        if library_view is not None:
            library_view.collections_changed.connect(self.lab_view.set_collection_names)
        models_view = self.pages.get("models")
        if models_view is not None:
            adapters = models_view.adapters.model
            adapters.modelReset.connect(lambda: self.lab_view.set_adapter_entries(adapters.rows()))
        self.tabs.addTab(self.lab_view, "Lab")
        self.pages["lab"] = self.lab_view

    # -- start-up --------------------------------------------------------------------------

    def start_when_shown(self, *, load_model: bool = True) -> None:
        """``start`` once the window is on screen (exposed and painted), so nothing that
        ``start`` builds or imports delays the first sight of it."""
        handle = self.windowHandle()
        if handle is None or handle.isExposed():
            QTimer.singleShot(0, self, lambda: self.start(load_model=load_model))
            return
        watcher = _FirstExpose(handle, lambda: self.start(load_model=load_model))
        # A window that is never exposed (started minimised, a hidden workspace) starts anyway.
        QTimer.singleShot(FIRST_EXPOSE_WAIT_MS, watcher, watcher.fire)

    def start(self, *, load_model: bool = True) -> None:
        """Start the threads, show the chats, load the default model in the background, and
        build the other pages once their modules are imported (``pages_added``). Only the
        first call does anything."""
        if self._started or self.closed_cleanly is not None:  # started, or closed already
            return
        self._started = True
        self.backend.start()
        self.backend.run(self.backend.core, core_tasks.snapshot, "open your chats",
                         on_result=self._snapshot_ready)
        if load_model:
            self.load_model(None)
        # The other pages' modules (pyqtgraph, the fine-tune and lab pages) take about a second
        # to import on 2 cores: imported off this thread while the core thread opens the chats
        # and the engine loads; then built here.
        imports = _PageImports(self)
        imports.done.connect(self._pages_imported, Qt.ConnectionType.QueuedConnection)
        imports.start()

    def _pages_imported(self) -> None:
        if self.closed_cleanly is not None:  # closed meanwhile
            return
        self._add_pages()
        for page in self.pages.values():
            starter = getattr(page, "start", None)
            if starter is not None and page is not self.chat_view:
                starter()
        if self.snapshot is not None:  # the chats opened first: show the settings they hold
            self._show_settings(self.snapshot)
        self.pages_ready = True
        self.pages_added.emit()
        # Last: importing and loading the embedder holds the GIL for moments the window would
        # feel; better now, while it shows "Loading model…", than in the middle of a task.
        # (Only when collections exist; a failure here shows up again, reported, on real use.)
        warm_ups = ((self.backend.library, core_tasks.warm_up_library),
                    (self.backend.core, core_tasks.warm_up_retrieval))
        pending = [len(warm_ups)]

        def one_done() -> None:
            pending[0] -= 1
            if pending[0] == 0:
                self.warmed_up.emit()

        for worker, task in warm_ups:
            self.backend.run(worker, task, "prepare document search",
                             on_error=lambda error: log.warning("warm-up failed: %s", error),
                             on_finished=one_done)

    def _snapshot_ready(self, snapshot: core_tasks.CoreSnapshot) -> None:
        self.snapshot = snapshot
        self.chat_view.show_chats(snapshot.chats)
        self._show_settings(snapshot)

    def _show_settings(self, snapshot: core_tasks.CoreSnapshot) -> None:
        """The snapshot's settings on the pages built so far."""
        settings_view = self.pages.get("settings")
        if settings_view is not None:
            settings_view.show_settings(snapshot.settings, snapshot.home)
        models_view = self.pages.get("models")
        if models_view is not None:
            models_view.set_default_spec(snapshot.settings.default_model)

    def load_model(self, spec: str | None, *, reload: bool = False) -> None:
        """Load ``spec`` (None: the active or default model) in the core thread."""
        previous = self.model_info
        self.backend.run(
            self.backend.core, lambda session, job: core_tasks.load_model(session, job, spec,
                                                                          reload=reload),
            "load the model",
            on_yield=self._model_loading,
            on_result=self.set_model_info,
            on_error=lambda _error: self._load_failed(previous),
        )

    def _load_failed(self, previous: LoadInfo | None) -> bool:
        # The engine swaps models only after a successful load: the previous one is still there.
        self.set_model_info(previous)
        return True  # and show what went wrong

    def _model_loading(self, event: object) -> None:
        if isinstance(event, core_tasks.ModelLoading):
            self.model_label.setText(f"Loading {event.name}…")
            self.chat_view.show_loading(event.name)

    def set_model_info(self, info: LoadInfo | None) -> None:
        self.model_info = info
        self.chat_view.show_loading(None)
        self.chat_view.show_model(info)
        if info is None:
            self.model_label.setText("No model loaded")
        else:
            notes = [note for note in (info.template_warning, info.fallback) if note]
            warning = " ⚠" if notes else ""
            self.model_label.setText(f"Model: {info.name} · context {info.n_ctx} · "
                                     f"{info.n_threads} threads{warning}")
            # The notes also show in the bar above the chat (``ChatView.show_model``).
            self.model_label.setToolTip("\n".join(notes) or str(info.path))
        self.model_loaded.emit(info)

    def _show_speed(self, meta: dict[str, Any]) -> None:
        if meta.get("generated_tokens"):
            self.speed_label.setText(f"Last answer: {meta.get('generation_tps', 0):.1f} tokens/s, "
                                     f"first token {meta.get('time_to_first_token_s', 0):.2f} s")

    # -- shutdown --------------------------------------------------------------------------

    def closeEvent(self, event: QCloseEvent) -> None:
        """Stop cleanly: an answer in progress is stored as interrupted, indexing keeps every
        file it finished, the engine process is shut down."""
        self.statusBar().showMessage("Closing…")
        self.hide()
        finetune = self.pages.get("finetune")
        # A training run is cancelled first: it saves a checkpoint the next start can resume.
        stopped = finetune.stop() if finetune is not None else True
        lab = self.pages.get("lab")
        stopped = (lab.stop() if lab is not None else True) and stopped
        self.closed_cleanly = self.backend.stop() and stopped
        if not self.closed_cleanly:
            log.warning("a background thread did not stop in time")
        event.accept()
