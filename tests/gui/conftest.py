"""Fixtures for the window's tests: a real ``Backend`` and ``MainWindow`` over fakes."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

pytest.importorskip("PySide6")

from bastion.desktop.gui.backend import Backend
from bastion.desktop.gui.core_tasks import CoreSession
from bastion.desktop.gui.error_dialogs import ErrorReport, ErrorReporter
from bastion.desktop.gui.main_window import MainWindow
from bastion.desktop.paths import data_paths
from bastion.models.catalog import Catalog
from tests.gui.fakes import FakeApp, StreamingEngine, fake_library
from tests.models.gguf_factory import write_tiny_gguf


class RecordingReporter(ErrorReporter):
    """The real reporter (real messages, real logging) that records instead of opening dialogs."""

    def __init__(self, log_path: Path | None) -> None:
        super().__init__(None, log_path, present=self._record)
        self.shown: list[ErrorReport] = []

    def _record(self, report: ErrorReport) -> None:
        self.shown.append(report)


@pytest.fixture
def engine() -> StreamingEngine:
    return StreamingEngine()


@pytest.fixture
def reporter(bastion_home: Path) -> RecordingReporter:
    return RecordingReporter(bastion_home / "logs" / "bastion-gui.log")


@pytest.fixture
def embedded_gguf(tmp_path: Path) -> Path:
    """A tiny valid GGUF standing in for the embedded default model in the catalog."""
    return write_tiny_gguf(tmp_path / "SmolLM2-135M-Instruct.Q4_1.gguf")


@pytest.fixture
def library_delay() -> float:
    """Seconds per embedded text in the fake library (override to slow indexing down)."""
    return 0.0


@pytest.fixture
def make_backend(engine: StreamingEngine, reporter: RecordingReporter, embedded_gguf: Path,
                 library_delay: float) -> Iterator[Callable[..., Backend]]:
    made: list[Backend] = []

    def make(failing: tuple[str, ...] = ()) -> Backend:
        backend = Backend(
            lambda: CoreSession(FakeApp(engine, failing=failing)),
            lambda: fake_library(data_paths(), library_delay),
            lambda: Catalog(data_paths().models_dir, embedded_path=embedded_gguf),
            reporter,
        )
        made.append(backend)
        return backend

    yield make
    for backend in made:
        backend.stop()


@pytest.fixture
def window(qtbot, make_backend: Callable[..., Backend]) -> Iterator[MainWindow]:
    """The main window, started (default model loaded by the fake engine), chats and pages
    shown."""
    win = MainWindow(make_backend())
    qtbot.addWidget(win)
    win.show()
    win.start()
    qtbot.waitUntil(lambda: win.model_info is not None and win.chat_view.chat is not None
                    and win.pages_ready, timeout=10000)
    yield win
    win.close()
