"""A model's template warning shows in a dismissible bar above the chat, not only in a tooltip."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from PySide6.QtCore import QPoint, Qt

from bastion.desktop.gui.main_window import MainWindow
from bastion.models.engine_types import LoadInfo
from tests.gui.fakes import StreamingEngine

pytestmark = pytest.mark.qt_log_ignore("propagateSizeHints")

# What the engine says when a GGUF's template tried to reach Python internals (the sandbox
# refused it; see models/chat_template.py).
SSTI_WARNING = ("This model's chat template was not used (the template tried to use an unsafe "
                "attribute: __subclasses__); Bastion uses its default (ChatML) format. Answers "
                "may be worse: use a model with a working template.")


class RefusedTemplateEngine(StreamingEngine):
    """Models whose file name contains "hostile" load with their template refused."""

    def load_as(self, path: Path, n_ctx: int, n_threads: int) -> LoadInfo:
        info = super().load_as(path, n_ctx, n_threads)
        if "hostile" in path.name:
            self.loaded = info = dataclasses.replace(info, template_source="default",
                                                     template_warning=SSTI_WARNING)
        return info


@pytest.fixture
def engine() -> StreamingEngine:
    return RefusedTemplateEngine()


def top_in_window(widget, window: MainWindow) -> int:
    return widget.mapTo(window, QPoint(0, 0)).y()


def test_no_bar_when_the_model_is_fine(qtbot, window: MainWindow) -> None:
    assert window.model_info is not None and window.model_info.template_warning is None
    assert not window.chat_view.model_notice.isVisible()


def test_template_warning_shows_above_the_chat_until_dismissed(qtbot, window: MainWindow) -> None:
    bar = window.chat_view.model_notice
    window.load_model("hostile-template")
    qtbot.waitUntil(lambda: window.model_info is not None
                    and window.model_info.name == "hostile-template", timeout=10000)
    assert bar.isVisible()
    assert "__subclasses__" in bar.text.text() and "hostile-template" in bar.text.text()
    # Above the answers, below the chat's header: where the user looks.
    chat = window.chat_view
    assert top_in_window(chat.header, window) < top_in_window(bar, window)
    assert top_in_window(bar, window) + bar.height() <= top_in_window(chat.message_list, window)

    qtbot.mouseClick(bar.close_button, Qt.MouseButton.LeftButton)
    assert not bar.isVisible()
    # Loading the same model again with the same warning does not nag...
    with qtbot.waitSignal(window.model_loaded, timeout=10000):
        window.load_model("hostile-template", reload=True)
    assert [name for name, _ctx in window.backend.core.context.app.loads].count(
        "hostile-template") == 2
    assert not bar.isVisible()
    # ...another model with a problem has its own say; a fine model clears the bar.
    window.load_model("hostile-too")
    qtbot.waitUntil(lambda: window.model_info is not None
                    and window.model_info.name == "hostile-too", timeout=10000)
    assert bar.isVisible() and "hostile-too" in bar.text.text()
    window.load_model("fine")
    qtbot.waitUntil(lambda: window.model_info is not None and window.model_info.name == "fine",
                    timeout=10000)
    assert not bar.isVisible() and bar.notes == []


def test_a_new_engine_fallback_is_in_the_bar(qtbot, window: MainWindow) -> None:
    info = window.model_info
    assert info is not None
    window.set_model_info(dataclasses.replace(
        info, fallback="the engine runs on one thread (the engine's self-test with the faster "
                       "setting failed: crash). Answers may be slower; everything else works.",
        fallback_is_new=True))
    bar = window.chat_view.model_notice
    assert bar.isVisible() and "The engine runs on one thread" in bar.text.text()
