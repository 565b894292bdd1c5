"""The Adapters section of the models page (real adapter catalog over generated adapters, a tiny
base model in the models folder): import checked against the base, verify, remove, bad input."""

from __future__ import annotations

from pathlib import Path

import pytest

from bastion.desktop.gui.adapters_view import AdaptersModel
from bastion.desktop.gui.main_window import MainWindow
from bastion.models.adapter_catalog import AdapterCatalog
from bastion.models.adapter_import import import_adapter
from bastion.models.catalog import Catalog
from tests.models.adapter_fixtures import tiny_lora, write_base_gguf
from tests.models.gguf_factory import write_png_named_gguf, write_tiny_gguf

pytestmark = pytest.mark.qt_log_ignore("propagateSizeHints")


def cell(view, row: int, column: str) -> str:
    return view.model.index(row, view.model.HEADERS.index(column)).data()


@pytest.fixture
def section(qtbot, window: MainWindow, bastion_home: Path):
    """The adapters section, idle, with a tiny base model in the models folder."""
    write_base_gguf(bastion_home / "models" / "Tiny-Base.gguf")
    view = window.models_view.adapters
    qtbot.waitUntil(lambda: view.busy_with is None, timeout=10000)
    return view


def test_an_adapter_is_imported_against_its_base_and_verified(
        qtbot, section, tmp_path: Path, bastion_home: Path) -> None:
    assert section.adapters_dir == bastion_home / "models" / "adapters"
    section.import_file(tiny_lora(tmp_path / "src" / "style.gguf"))
    qtbot.waitUntil(lambda: section.model.rowCount() == 1 and section.busy_with is None,
                    timeout=10000)
    assert cell(section, 0, "Adapter") == "style"
    assert cell(section, 0, "Fits") == "Tiny-Base (64 wide, 2 layers)"
    assert cell(section, 0, "Adapts") == "attn_q, attn_v"
    assert "verified" in cell(section, 0, "SHA-256")
    assert "it fits Tiny-Base" in section.message.text()
    assert (bastion_home / "models" / "adapters" / "style.gguf").is_file()

    section.verify("style")
    qtbot.waitUntil(lambda: section.last_verify is not None and section.busy_with is None,
                    timeout=10000)
    assert section.last_verify.ok and section.last_verify.state == "verified"


def test_bad_adapters_are_refused_with_the_reason_and_leave_nothing(
        qtbot, section, reporter, tmp_path: Path, bastion_home: Path) -> None:
    cases = {
        write_png_named_gguf(tmp_path / "picture.gguf"): "is not a GGUF model file",
        write_tiny_gguf(tmp_path / "a-model.gguf"): "is a model, not a LoRA adapter",
        tiny_lora(tmp_path / "wide.gguf", hidden=96, kv=48, heads=(6, 2)):
            "this adapter is for a model with hidden size 96; Tiny-Base has 64",
    }
    for path, reason in cases.items():
        shown = len(reporter.shown)
        section.import_file(path)
        qtbot.waitUntil(lambda n=shown: len(reporter.shown) > n, timeout=10000)
        report = reporter.shown[-1]
        assert report.known and reason in report.text, report.text
        qtbot.waitUntil(lambda: section.busy_with is None, timeout=10000)
    assert section.model.rowCount() == 0
    assert AdapterCatalog(bastion_home / "models" / "adapters").entries() == []


def test_verify_reports_a_changed_file(qtbot, section, reporter, tmp_path: Path,
                                       bastion_home: Path) -> None:
    section.import_file(tiny_lora(tmp_path / "style.gguf"))
    qtbot.waitUntil(lambda: section.model.rowCount() == 1 and section.busy_with is None,
                    timeout=10000)
    copy = bastion_home / "models" / "adapters" / "style.gguf"
    data = bytearray(copy.read_bytes())
    data[-1] ^= 0x01
    copy.write_bytes(bytes(data))
    section.verify("style")
    qtbot.waitUntil(lambda: section.last_verify is not None and section.busy_with is None,
                    timeout=10000)
    assert not section.last_verify.ok and section.last_verify.state == "mismatch"
    assert "differs from the SHA-256 recorded" in reporter.shown[-1].text
    qtbot.waitUntil(lambda: "MISMATCH" in cell(section, 0, "SHA-256"), timeout=10000)


def test_remove_and_removing_an_unknown_name(qtbot, section, reporter, tmp_path: Path,
                                             bastion_home: Path) -> None:
    section.import_file(tiny_lora(tmp_path / "style.gguf"))
    qtbot.waitUntil(lambda: section.model.rowCount() == 1 and section.busy_with is None,
                    timeout=10000)
    section.remove_adapter("style")
    qtbot.waitUntil(lambda: section.model.rowCount() == 0, timeout=10000)
    assert "Removed the adapter style" in section.message.text()
    assert not (bastion_home / "models" / "adapters" / "style.gguf").exists()

    section.remove_adapter("style")
    qtbot.waitUntil(lambda: bool(reporter.shown), timeout=10000)
    assert reporter.shown[-1].known and "No adapter called 'style'" in reporter.shown[-1].text


def test_adapters_model_passes_the_model_tester(qtmodeltester, tmp_path: Path) -> None:
    models_dir = tmp_path / "models"
    write_base_gguf(models_dir / "Tiny-Base.gguf")
    adapters_dir = models_dir / "adapters"
    import_adapter(tiny_lora(tmp_path / "a.gguf"), adapters_dir, Catalog(models_dir,
                                                                         include_embedded=False))
    adapters_dir.joinpath("broken.gguf").write_bytes(b"not a gguf")
    model = AdaptersModel()
    model.set_entries(AdapterCatalog(adapters_dir).entries())
    assert model.rowCount() == 2
    assert model.index(1, model.HEADERS.index("Status")).data() == "Not usable"
    qtmodeltester.check(model)
