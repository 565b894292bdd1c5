"""The window keeps handling events while an answer streams and a folder is indexed at once.

The bound is generous (500 ms) so a loaded CI machine does not fail it; the real figures come
from ``bench/gui_stall_bench.py``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bastion.desktop.gui.main_window import MainWindow
from bastion.desktop.gui.stall_meter import StallMeter
from tests.gui.fakes import StreamingEngine

pytestmark = pytest.mark.qt_log_ignore("propagateSizeHints")

WORST_GAP_MS = 500


@pytest.fixture
def library_delay() -> float:
    return 0.002


def test_event_loop_keeps_running_during_streaming_and_indexing(
        qtbot, window: MainWindow, engine: StreamingEngine, tmp_path: Path) -> None:
    folder = tmp_path / "docs"
    folder.mkdir()
    for i in range(150):
        (folder / f"doc{i:03}.md").write_text(f"# Doc {i}\n\n" + f"Line about item {i}. " * 80)
    engine.reply = " ".join(f"**tok{i}**" if i % 7 == 0 else f"tok{i}" for i in range(600))
    engine.delay_s = 0.003

    meter = StallMeter(10)
    meter.start()
    window.library_view.add_folder(folder, "docs")
    view = window.chat_view
    view.input.setPlainText("Stream a long answer please")
    view.send()
    qtbot.waitUntil(lambda: not view.busy, timeout=60000)
    qtbot.waitUntil(lambda: window.library_view.syncing is None
                    and window.library_view.model.status_of("docs") is not None
                    and window.library_view.model.status_of("docs").counts["indexed"] == 150,
                    timeout=60000)
    meter.stop()

    assert view.messages.item(1).text.endswith("tok599")
    assert len(meter.gaps_ms) > 20
    assert meter.worst_ms < WORST_GAP_MS, f"worst gap {meter.worst_ms:.0f} ms"
    # Markdown was re-rendered in batches, not once per token.
    assert view.message_list.widgets[1].renders < 600
