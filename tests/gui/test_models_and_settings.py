"""The models page (real catalog over generated GGUF files, scripted engine) and the settings
page (real settings file): metadata, SHA-256, import, load/unload, failures, default, apply."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bastion.desktop.gui.main_window import MainWindow
from bastion.desktop.gui.models_view import ModelsModel
from bastion.models.catalog import Catalog
from tests.models.gguf_factory import write_tiny_gguf, write_zero_byte

pytestmark = pytest.mark.qt_log_ignore("propagateSizeHints")


def cell(view, row: int, column: str) -> str:
    return view.model.index(row, view.model.HEADERS.index(column)).data()


def test_models_are_listed_with_metadata_and_sha256(qtbot, window: MainWindow) -> None:
    view = window.models_view
    qtbot.waitUntil(lambda: view.model.rowCount() == 1 and view.busy_with is None, timeout=10000)
    assert cell(view, 0, "Architecture") == "llama"
    assert cell(view, 0, "Context") == "256"
    assert cell(view, 0, "Chat template") == "present"
    assert view.model.entry(0).sha256 is not None  # hashed in the background at start
    assert "no recorded hash" in cell(view, 0, "SHA-256")
    assert "Default" in cell(view, 0, "Status")


def test_import_verifies_and_records_the_hash(qtbot, window: MainWindow, tmp_path: Path,
                                              bastion_home: Path) -> None:
    view = window.models_view
    qtbot.waitUntil(lambda: view.busy_with is None and view.model.rowCount() == 1, timeout=10000)
    source = write_tiny_gguf(tmp_path / "src" / "Custom-Model.Q8_0.gguf", name="Custom Model")
    view.import_file(source)
    qtbot.waitUntil(lambda: view.model.rowCount() == 2 and view.busy_with is None, timeout=10000)
    row = view.model.row_of("Custom-Model.Q8_0")
    assert row is not None and "verified" in cell(view, row, "SHA-256")
    assert (bastion_home / "models" / "Custom-Model.Q8_0.gguf").is_file()
    assert "recorded" in view.message.text()

    view.verify("Custom-Model.Q8_0")
    qtbot.waitUntil(lambda: view.last_verify is not None and view.busy_with is None, timeout=10000)
    assert view.last_verify.ok and view.last_verify.state == "verified"


def test_importing_a_bad_file_says_why_and_leaves_nothing(qtbot, window: MainWindow, reporter,
                                                          tmp_path: Path, bastion_home: Path) -> None:
    view = window.models_view
    view.import_file(write_zero_byte(tmp_path / "empty.gguf"))
    qtbot.waitUntil(lambda: bool(reporter.shown), timeout=10000)
    assert reporter.shown[-1].known and "empty.gguf" in reporter.shown[-1].text
    assert not list((bastion_home / "models").glob("*.gguf"))


def test_load_unload_and_a_failed_load_keeps_the_previous_model(qtbot, make_backend, reporter,
                                                                tmp_path: Path) -> None:
    win = MainWindow(make_backend(failing=("Broken",)))
    qtbot.addWidget(win)
    win.show()
    win.start()
    qtbot.waitUntil(lambda: win.model_info is not None, timeout=10000)
    view = win.models_view
    qtbot.waitUntil(lambda: view.model.rowCount() == 1 and view.busy_with is None, timeout=10000)
    first = win.model_info
    for name in ("Other", "Broken"):
        view.import_file(write_tiny_gguf(tmp_path / f"{name}.gguf", name=name))
    qtbot.waitUntil(lambda: view.model.rowCount() == 3 and view.busy_with is None, timeout=10000)

    view.load(view.model.entry(view.model.row_of("Other")))
    qtbot.waitUntil(lambda: win.model_info is not None and win.model_info.name == "Other",
                    timeout=10000)
    assert "Loaded" in cell(view, view.model.row_of("Other"), "Status")
    assert "Other" in win.model_label.text()

    view.load(view.model.entry(view.model.row_of("Broken")))
    qtbot.waitUntil(lambda: bool(reporter.shown), timeout=10000)
    assert "could not load" in reporter.shown[-1].text and "Broken" in reporter.shown[-1].text
    assert win.model_info.name == "Other" and view.busy_with is None
    app = win.backend.core.context.app
    assert app.loaded_model().name == "Other"  # still loaded and used for answers

    view.unload()
    qtbot.waitUntil(lambda: win.model_info is None)
    assert win.model_label.text() == "No model loaded"
    assert first is not None
    win.close()


def test_choosing_the_default_model_is_saved(qtbot, window: MainWindow, tmp_path: Path,
                                             bastion_home: Path) -> None:
    view = window.models_view
    view.import_file(write_tiny_gguf(tmp_path / "Preferred.gguf"))
    qtbot.waitUntil(lambda: view.model.rowCount() == 2 and view.busy_with is None, timeout=10000)
    row = view.model.row_of("Preferred")
    view.set_default(view.model.entry(row))
    qtbot.waitUntil(lambda: "Default" in cell(view, row, "Status"))
    assert "Default" not in cell(view, view.model.row_of("SmolLM2-135M-Instruct.Q4_1"), "Status")
    saved = json.loads((bastion_home / "settings.json").read_text())
    assert saved["default_model"] == "Preferred"


def test_settings_persist_and_apply(qtbot, window: MainWindow, bastion_home: Path) -> None:
    view = window.settings_view
    qtbot.waitUntil(view.isEnabled)
    assert view.home.text() == str(bastion_home)
    app = window.backend.core.context.app
    loads_before = len(app.loads)

    view.temperature.setValue(0.0)
    view.system_prompt.setPlainText("Answer like a librarian.")
    view.passage_sentences.setValue(0)
    view.grounded_adapter.setChecked(not app.settings.grounded_adapter)
    view.save()
    qtbot.waitUntil(lambda: not view.saving)
    saved = json.loads((bastion_home / "settings.json").read_text())
    assert saved["temperature"] == 0.0 and saved["system_prompt"] == "Answer like a librarian."
    assert saved["passage_sentences"] == 0 and saved["grounded_adapter"] is view.grounded_adapter.isChecked()
    assert len(app.loads) == loads_before  # sampling applies without a reload
    assert app.settings.temperature == 0.0  # the next answer reads it
    assert app.settings.retrieval_policy().sentences == 0

    view.n_ctx.setValue(2048)
    view.save()
    qtbot.waitUntil(lambda: not view.saving)
    assert app.loads[-1][1] == 2048 and len(app.loads) == loads_before + 1
    assert window.model_info.n_ctx == 2048
    assert "reloaded" in view.status.text()


def test_models_model_passes_the_model_tester(qtmodeltester, tmp_path: Path) -> None:
    embedded = write_tiny_gguf(tmp_path / "a.gguf")
    write_tiny_gguf(tmp_path / "models" / "b.gguf")
    model = ModelsModel()
    model.set_entries(Catalog(tmp_path / "models", embedded_path=embedded).entries())
    model.set_marks(embedded, None, keep_default=False)
    assert model.rowCount() == 2
    qtmodeltester.check(model)


def test_changing_the_data_folder_applies_from_the_next_start(
    qtbot, window: MainWindow, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from PySide6.QtWidgets import QFileDialog

    from bastion.desktop import paths

    pointer = tmp_path / "config" / "data-folder.txt"
    monkeypatch.setattr(paths, "location_file", lambda: pointer)
    new_home = tmp_path / "elsewhere"
    new_home.mkdir()
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda *args: str(new_home))
    view = window.settings_view
    qtbot.waitUntil(view.isEnabled)
    view.findChild(type(view.save_button), "changeDataFolder").click()
    assert pointer.read_text().strip() == str(new_home.resolve())
    assert "next start" in view.home_hint.text()
    monkeypatch.delenv("BASTION_HOME")
    assert paths.data_home() == new_home.resolve()  # what the next start uses
    paths.choose_data_home(None)
    assert not pointer.exists()
