"""One name per model file everywhere: the models page, the status bar and the CLI all call a
file by its id (the file name without .gguf), never by the GGUF's own general.name."""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtCore import Qt

from bastion.desktop.cli import main as cli_main
from bastion.desktop.gui.main_window import MainWindow
from tests.models.gguf_factory import write_tiny_gguf

pytestmark = pytest.mark.qt_log_ignore("propagateSizeHints")


def test_models_page_status_bar_and_cli_use_one_name(qtbot, window: MainWindow, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    view = window.models_view
    qtbot.waitUntil(lambda: view.model.rowCount() == 1 and view.busy_with is None, timeout=10000)
    # The embedded default: its file says "Smollm2 135M 8k ..." inside; the page says the id.
    default = view.model.index(0, 0)
    assert default.data() == "SmolLM2-135M-Instruct.Q4_1"

    source = write_tiny_gguf(tmp_path / "src" / "Custom-Model.Q8_0.gguf", name="Custom Model")
    view.import_file(source)
    qtbot.waitUntil(lambda: view.model.rowCount() == 2 and view.busy_with is None, timeout=10000)
    row = view.model.row_of("Custom-Model.Q8_0")
    assert row is not None
    page_name = view.model.index(row, 0).data()
    assert page_name == "Custom-Model.Q8_0"
    # The file's own title stays reachable as a detail, not as a second name.
    tooltip = view.model.index(row, 0).data(Qt.ItemDataRole.ToolTipRole)
    assert "Named inside the file: Custom Model" in tooltip

    view.load(view.model.entry(row))
    qtbot.waitUntil(lambda: window.model_info is not None
                    and window.model_info.path.name == "Custom-Model.Q8_0.gguf", timeout=10000)
    assert window.model_label.text().startswith(f"Model: {page_name} ·")
    assert "Custom Model" not in window.model_label.text()

    assert cli_main(["models", "list"]) == 0
    listed = [line.split()[0] for line in capsys.readouterr().out.splitlines()[1:] if line.strip()]
    assert page_name in listed and "Custom" not in " ".join(listed).replace(page_name, "")
