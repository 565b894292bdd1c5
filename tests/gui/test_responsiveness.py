"""The window keeps handling events while an answer streams and a folder is indexed at once.

Both pieces of work are held mid-way (the engine after half the answer, the embedder on its
first batch) while the window is asked to do things: had either run on the GUI thread, the
window would hang there and the test would fail on a timeout, never on a machine's speed. How
long the event loop goes without running, with the real model and embedder, is measured by
``bench/gui_stall_bench.py``, not asserted here.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from numpy.typing import NDArray

from bastion.desktop.gui.main_window import MainWindow
from bastion.desktop.gui.stall_meter import StallMeter
from bastion.models.engine_types import ChatEvent
from tests.gui.fakes import StreamingEngine
from tests.store.fakes import HashingEmbedder

pytestmark = pytest.mark.qt_log_ignore("propagateSizeHints")

HELD_S = 60  # how long a held worker waits before giving up (only reached when the test fails)


class Gate:
    """Holds a worker thread at one point until released, and records which thread it was."""

    def __init__(self) -> None:
        self.reached = threading.Event()
        self.release = threading.Event()
        self.threads: set[int] = set()

    def pass_through(self, hold: bool) -> None:
        self.threads.add(threading.get_ident())
        if hold and not self.reached.is_set():
            self.reached.set()
            self.release.wait(HELD_S)


@pytest.fixture
def gates(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Gate, Gate]]:
    answer, embedding = Gate(), Gate()
    chat, embed = StreamingEngine.chat, HashingEmbedder.embed

    def held_chat(self: StreamingEngine, messages: Sequence[dict[str, str]],
                  *args: Any, **kwargs: Any) -> Iterator[ChatEvent]:
        for i, event in enumerate(chat(self, messages, *args, **kwargs)):
            answer.pass_through(hold=i == 300)
            yield event

    def held_embed(self: HashingEmbedder, texts: list[str]) -> NDArray[np.float32]:
        embedding.pass_through(hold=True)
        return embed(self, texts)

    monkeypatch.setattr(StreamingEngine, "chat", held_chat)
    monkeypatch.setattr(HashingEmbedder, "embed", held_embed)
    yield answer, embedding
    answer.release.set()
    embedding.release.set()


def test_event_loop_keeps_running_while_an_answer_streams_and_a_folder_is_indexed(
        qtbot, window: MainWindow, engine: StreamingEngine, tmp_path: Path,
        gates: tuple[Gate, Gate]) -> None:
    answer, embedding = gates
    folder = tmp_path / "docs"
    folder.mkdir()
    for i in range(150):
        (folder / f"doc{i:03}.md").write_text(f"# Doc {i}\n\n" + f"Line about item {i}. " * 80)
    engine.reply = " ".join(f"**tok{i}**" if i % 7 == 0 else f"tok{i}" for i in range(600))

    window.library_view.add_folder(folder, "docs")
    view = window.chat_view
    view.input.setPlainText("Stream a long answer please")
    view.send()
    qtbot.waitUntil(lambda: answer.reached.is_set() and embedding.reached.is_set(),
                    timeout=HELD_S * 1000)

    # Both workers are stopped mid-way; the window still runs its timers, shows the half
    # answer, reports the sync, and takes input.
    meter = StallMeter(10)
    meter.start()
    qtbot.waitUntil(lambda: len(meter.gaps_ms) >= 20, timeout=HELD_S * 1000)
    meter.stop()
    qtbot.waitUntil(lambda: "tok299" in view.messages.item(1).text, timeout=HELD_S * 1000)
    assert "tok300" not in view.messages.item(1).text
    assert view.busy and window.library_view.syncing == "docs"
    assert view.composer.stop_button.isEnabled()
    window.tabs.setCurrentWidget(window.library_view)
    window.tabs.setCurrentWidget(view)
    view.input.clear()
    qtbot.keyClicks(view.input, "A follow-up typed while both wait")
    assert view.input.toPlainText() == "A follow-up typed while both wait"

    answer.release.set()
    embedding.release.set()
    qtbot.waitUntil(lambda: not view.busy, timeout=HELD_S * 1000)
    qtbot.waitUntil(lambda: window.library_view.syncing is None
                    and window.library_view.model.status_of("docs") is not None
                    and window.library_view.model.status_of("docs").counts["indexed"] == 150,
                    timeout=HELD_S * 1000)

    assert view.messages.item(1).text.endswith("tok599")
    gui_thread = threading.get_ident()
    assert answer.threads and gui_thread not in answer.threads
    assert embedding.threads and gui_thread not in embedding.threads
    # Markdown was re-rendered in batches, not once per token.
    assert view.message_list.widgets[1].renders < 600
