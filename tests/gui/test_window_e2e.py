"""End to end with the real parts: SmolLM2 in the engine process, the real library with
all-MiniLM-L6-v2 and sandboxed parsing. Add a folder, wait for indexing, ask in documents mode,
see the source under the answer."""

from __future__ import annotations

from pathlib import Path

import pytest

from bastion.desktop.gui.application import real_factories
from bastion.desktop.gui.backend import Backend
from bastion.desktop.gui.main_window import MainWindow

pytestmark = [pytest.mark.slow, pytest.mark.qt_log_ignore("propagateSizeHints")]

FACTS = {
    "lighthouse.md": "# Keeper's log\n\nThe Varden lighthouse was painted ochre in 1911 by the "
                     "keeper Ilse Marrow, who also kept forty goats on the island.\n",
    "bread.txt": "Sourdough needs a starter fed with flour and water; the bakery on Quay Street "
                 "bakes rye loaves every Tuesday.\n",
}


def test_real_model_answers_from_an_indexed_folder(qtbot, reporter, tmp_path: Path,
                                                   smollm2_path: Path) -> None:
    folder = tmp_path / "notes"
    folder.mkdir()
    for name, text in FACTS.items():
        (folder / name).write_text(text, encoding="utf-8")
    win = MainWindow(Backend(*real_factories(), reporter))
    qtbot.addWidget(win)
    win.show()
    win.start()
    try:
        qtbot.waitUntil(lambda: win.model_info is not None, timeout=180000)
        assert win.model_info.path == smollm2_path  # the embedded default, nothing configured
        library = win.library_view
        library.add_folder(folder, "notes")
        qtbot.waitUntil(lambda: library.syncing is None and library.model.status_of("notes")
                        is not None and library.model.status_of("notes").counts["indexed"] == 2,
                        timeout=300000)
        view = win.chat_view
        qtbot.waitUntil(lambda: view.chat is not None and "notes" in view.collection_names)
        view.set_mode("docs")
        view.set_collections(["notes"])
        qtbot.waitUntil(lambda: view.chat.mode == "docs" and view.chat.collections == ["notes"])
        view.input.setPlainText("What colour was the Varden lighthouse painted?")
        view.send()
        qtbot.waitUntil(lambda: not view.busy, timeout=300000)
        assert reporter.shown == []
        answer = view.messages.item(1)
        assert answer.status == "complete" and answer.text.strip()
        assert answer.sources and Path(answer.sources[0].path).name == "lighthouse.md"
        card = view.message_list.widgets[1]
        assert card.sources.rows and "lighthouse.md" in card.sources.rows[0].title_label.text()
        assert "tokens/s" in card.stats.text()
    finally:
        win.close()
    assert win.closed_cleanly
