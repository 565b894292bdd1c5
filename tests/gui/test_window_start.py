"""The window shows with the chat alone; the other pages and the background work start once
it is on screen."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable

import pytest
from PySide6.QtWidgets import QTabWidget

from bastion.desktop.gui.backend import Backend
from bastion.desktop.gui.main_window import MainWindow

pytestmark = pytest.mark.qt_log_ignore("propagateSizeHints")


def titles(tabs: QTabWidget) -> list[str]:
    return [tabs.tabText(i) for i in range(tabs.count())]


def test_pages_and_work_start_after_the_window_is_shown(qtbot, make_backend: Callable[..., Backend]
                                                         ) -> None:
    backend = make_backend()
    win = MainWindow(backend)
    qtbot.addWidget(win)
    # Built, not shown: only the chat page exists, and nothing runs in the background yet.
    assert titles(win.tabs) == ["Chat"] and set(win.pages) == {"chat"}
    assert not backend.core.isRunning()

    win.show()
    win.start_when_shown()
    assert titles(win.tabs) == ["Chat"]  # not before the window has been painted
    with qtbot.waitSignal(win.pages_added, timeout=10000):
        pass
    assert titles(win.tabs) == ["Chat", "Library", "Models", "Fine-tune", "Lab", "Settings"]
    qtbot.waitUntil(lambda: win.model_info is not None and win.chat_view.chat is not None,
                    timeout=10000)
    assert backend.core.isRunning()

    win.start()  # a second start does nothing (no second set of pages)
    assert len(titles(win.tabs)) == 6
    win.close()


def test_a_window_closed_before_it_started_never_starts(qtbot, make_backend: Callable[..., Backend]
                                                         ) -> None:
    backend = make_backend()
    win = MainWindow(backend)
    qtbot.addWidget(win)
    win.show()
    win.close()
    win.start()
    assert titles(win.tabs) == ["Chat"] and not backend.core.isRunning()


SHOW_WINDOW = """
import sys
import bastion.desktop
from PySide6.QtWidgets import QApplication
from bastion.desktop.gui.application import real_factories
from bastion.desktop.gui.backend import Backend
from bastion.desktop.gui.error_dialogs import ErrorReporter
from bastion.desktop.gui.main_window import MainWindow
from bastion.desktop.gui.style import apply_style

app = QApplication([])
apply_style(app)
window = MainWindow(Backend(*real_factories(), ErrorReporter(None, None)))
window.show()
app.processEvents()
print(" ".join(sorted(name for name in HEAVY if name in sys.modules)))
"""


def test_showing_the_window_imports_nothing_heavy(bastion_home) -> None:
    """The window is on screen before the model stack, the databases' helpers, the chart
    library or the markdown renderer are imported: they load in the background after it."""
    heavy = ("torch", "sentence_transformers", "llama_cpp", "numpy", "gguf", "sqlite_utils",
             "pyqtgraph", "markdown_it")
    code = f"HEAVY = {heavy!r}\n" + SHOW_WINDOW
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", BASTION_HOME=str(bastion_home))
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == ""


def test_the_window_says_when_its_start_up_work_is_over(qtbot, make_backend: Callable[..., Backend]
                                                        ) -> None:
    win = MainWindow(make_backend())
    qtbot.addWidget(win)
    win.show()
    with qtbot.waitSignal(win.warmed_up, timeout=30000):
        win.start()
    # The model load was queued before the warm-up on the same thread, so it is over too.
    assert win.model_info is not None and win.model_info.name == "smollm2"
    win.close()
