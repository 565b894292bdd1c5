"""A chat's LoRA adapters in the window: chosen with scales in the chat header, stored on the chat,
handed to the engine with the next answer, shown under that answer, and kept in step with the
Models page's imports and removals. Real adapter catalog over generated adapters for a tiny base."""

from __future__ import annotations

from pathlib import Path

import pytest

from bastion.desktop.gui.chat_header import ChatHeader, describe_adapters
from bastion.desktop.gui.chat_list_model import MessageItem
from bastion.desktop.gui.main_window import MainWindow
from bastion.desktop.gui.message_view import MessageWidget, answer_adapters, stats_line
from bastion.models.engine_types import AdapterUse
from bastion.store.chats import Chat, ChatStore
from tests.gui.fakes import StreamingEngine
from tests.models.adapter_fixtures import tiny_lora, write_base_gguf

pytestmark = pytest.mark.qt_log_ignore("propagateSizeHints")


def stored_chat(home: Path, chat_id: int) -> Chat:
    store = ChatStore(home / "bastion.db")
    try:
        return store.chat(chat_id)
    finally:
        store.close()


@pytest.fixture
def base(qtbot, window: MainWindow, bastion_home: Path) -> Path:
    """A tiny base model in the models folder, loaded, with the Models page idle."""
    path = write_base_gguf(bastion_home / "models" / "Tiny-Base.gguf")
    window.load_model(str(path))
    qtbot.waitUntil(lambda: window.model_info is not None and window.model_info.name == "Tiny-Base",
                    timeout=10000)
    qtbot.waitUntil(lambda: window.models_view.adapters.busy_with is None, timeout=10000)
    return path


def import_adapters(qtbot, window: MainWindow, tmp_path: Path, *names: str) -> None:
    section = window.models_view.adapters
    for seed, name in enumerate(names):
        section.import_file(tiny_lora(tmp_path / "src" / f"{name}.gguf", seed=seed))
        qtbot.waitUntil(lambda n=name: section.busy_with is None
                        and section.model.row_of(n) is not None, timeout=10000)
    picker = window.chat_view.header.adapters_picker
    qtbot.waitUntil(lambda: all(name in picker.rows for name in names), timeout=10000)


def test_chosen_adapters_and_scales_are_stored_and_answer_with(
        qtbot, window: MainWindow, base: Path, engine: StreamingEngine, tmp_path: Path,
        bastion_home: Path) -> None:
    import_adapters(qtbot, window, tmp_path, "facts", "style")
    view, header = window.chat_view, window.chat_view.header
    assert header.adapters_button.text() == "Adapters: none"
    check, scale, fits = header.adapters_picker.rows["style"]
    assert fits.text() == "for Tiny-Base"
    assert not scale.isEnabled()  # a scale belongs to a chosen adapter
    assert (scale.minimum(), scale.maximum(), scale.singleStep(), scale.value()) == (
        -4.0, 4.0, 0.1, 1.0)

    check.setChecked(True)
    qtbot.waitUntil(lambda: view.chat.adapters == [("style", 1.0)], timeout=5000)
    assert scale.isEnabled()
    scale.setValue(0.5)
    qtbot.waitUntil(lambda: view.chat.adapters == [("style", 0.5)], timeout=5000)
    assert stored_chat(bastion_home, view.chat.id).adapters == [("style", 0.5)]
    assert header.adapters_button.text() == "Adapters: style ×0.5"
    assert "style ×0.5" in header.adapters_button.toolTip()

    view.input.setPlainText("Say it in style")
    view.send()
    qtbot.waitUntil(lambda: not view.busy, timeout=10000)
    adapters_dir = bastion_home / "models" / "adapters"
    assert engine.adapters_used[-1] == (AdapterUse(str(adapters_dir / "style.gguf"), 0.5),)
    answer = view.messages.item(1)
    assert answer.status == "complete"
    assert answer.meta["adapters"] == [{"name": "style", "scale": 0.5}]
    stats = view.message_list.widgets[1].stats.text()
    assert "Tiny-Base + LoRA style ×0.5" in stats

    # Two adapters; unchecking one leaves the other at its scale.
    header.adapters_picker.rows["facts"][0].setChecked(True)
    qtbot.waitUntil(lambda: view.chat.adapters == [("facts", 1.0), ("style", 0.5)], timeout=5000)
    assert header.adapters_button.text() == "Adapters: facts ×1 +1"
    header.adapters_picker.rows["style"][0].setChecked(False)
    qtbot.waitUntil(lambda: view.chat.adapters == [("facts", 1.0)], timeout=5000)
    header.adapters_picker.rows["facts"][1].setValue(-1.5)
    qtbot.waitUntil(lambda: view.chat.adapters == [("facts", -1.5)], timeout=5000)
    view.input.setPlainText("Against the facts")
    view.send()
    qtbot.waitUntil(lambda: not view.busy, timeout=10000)
    assert engine.adapters_used[-1] == (AdapterUse(str(adapters_dir / "facts.gguf"), -1.5),)
    assert "LoRA facts ×-1.5" in view.message_list.widgets[3].stats.text()
    # The earlier answer still shows what it was made with.
    assert "LoRA style ×0.5" in view.message_list.widgets[1].stats.text()

    # None again: the model alone.
    header.adapters_picker.rows["facts"][0].setChecked(False)
    qtbot.waitUntil(lambda: view.chat.adapters == [], timeout=5000)
    view.input.setPlainText("Plain")
    view.send()
    qtbot.waitUntil(lambda: not view.busy, timeout=10000)
    assert engine.adapters_used[-1] == ()
    assert "LoRA" not in view.message_list.widgets[5].stats.text()


def test_a_new_chat_keeps_the_adapters_and_another_chat_shows_its_own(
        qtbot, window: MainWindow, base: Path, tmp_path: Path) -> None:
    import_adapters(qtbot, window, tmp_path, "style")
    view, header = window.chat_view, window.chat_view.header
    first = view.chat
    header.adapters_picker.rows["style"][1].setValue(2.0)  # unchosen: not saved
    header.adapters_picker.rows["style"][0].setChecked(True)
    qtbot.waitUntil(lambda: view.chat.adapters == [("style", 2.0)], timeout=5000)
    view.new_chat()  # like mode and collections, a new chat starts from the current one's
    qtbot.waitUntil(lambda: view.chat.id != first.id, timeout=5000)
    assert view.chat.adapters == [("style", 2.0)]
    header.adapters_picker.rows["style"][0].setChecked(False)
    qtbot.waitUntil(lambda: view.chat.adapters == [], timeout=5000)
    assert header.adapters_button.text() == "Adapters: none"
    view.open_chat(first)
    qtbot.waitUntil(lambda: view.chat.id == first.id, timeout=5000)
    check, scale, _fits = header.adapters_picker.rows["style"]
    assert check.isChecked() and scale.value() == 2.0
    assert header.adapters_button.text() == "Adapters: style ×2"


def test_the_adapter_list_follows_imports_and_removals(
        qtbot, window: MainWindow, base: Path, reporter, tmp_path: Path) -> None:
    view, header = window.chat_view, window.chat_view.header
    picker = header.adapters_picker
    assert picker.rows == {} and "import one on the Models page" in picker.hint.text()
    import_adapters(qtbot, window, tmp_path, "style")
    picker.rows["style"][0].setChecked(True)
    qtbot.waitUntil(lambda: view.chat.adapters == [("style", 1.0)], timeout=5000)

    window.models_view.adapters.remove_adapter("style")
    qtbot.waitUntil(lambda: "missing" in picker.rows["style"][0].text(), timeout=10000)
    # Still chosen, so it can be unchecked; the answer is made without it and says so.
    assert picker.rows["style"][0].isChecked()
    assert picker.rows["style"][2].text() == "no longer imported"
    view.input.setPlainText("With a removed adapter")
    view.send()
    qtbot.waitUntil(lambda: not view.busy and view.messages.rowCount() >= 2, timeout=10000)
    answer = view.messages.item(view.messages.rowCount() - 1)
    assert answer.meta["adapters"] == []
    assert "No adapter called 'style'" in answer.meta["adapters_skipped"][0]["reason"]
    assert "without LoRA style" in stats_line(answer)
    picker.rows["style"][0].setChecked(False)
    qtbot.waitUntil(lambda: view.chat.adapters == [], timeout=5000)
    assert picker.rows == {}

    import_adapters(qtbot, window, tmp_path, "facts")
    assert list(picker.rows) == ["facts"] and not picker.rows["facts"][0].isChecked()


def test_the_message_view_shows_an_answers_adapters(qtbot) -> None:
    meta = {"model": "SmolLM2-135M-Instruct.Q4_1", "generated_tokens": 12, "generation_tps": 30.0,
            "time_to_first_token_s": 0.1,
            "adapters": [{"name": "facts", "scale": 1.0}, {"name": "style", "scale": 0.25}]}
    widget = MessageWidget(MessageItem("assistant", "Hello.", "complete", id=2, meta=meta))
    qtbot.addWidget(widget)
    assert ("SmolLM2-135M-Instruct.Q4_1 + LoRA facts ×1, style ×0.25"
            in widget.stats.text())
    assert "tokens/s" in widget.stats.text()
    # Many adapters wrap under the answer instead of widening every card past the view.
    many = dict(meta, adapters=[{"name": f"an-adapter-with-a-long-name-{i}", "scale": 1.0}
                                for i in range(6)])
    crowded = MessageWidget(MessageItem("assistant", "Hi.", "complete", id=3, meta=many))
    qtbot.addWidget(crowded)
    assert crowded.minimumSizeHint().width() < 500
    without = dict(meta, adapters=[])
    assert "LoRA" not in stats_line(MessageItem("assistant", "Hi.", "complete", meta=without))
    # Histories written before adapters existed, or edited by hand, are shown without them.
    assert answer_adapters({}) == []
    assert answer_adapters({"adapters": "style"}) == []
    assert answer_adapters({"adapters": [{"name": "a", "scale": "x"}, {"scale": 1}, 3,
                                         {"name": "b"}]}) == [("b", 1.0)]


def test_the_header_without_a_chat_or_adapters(qtbot) -> None:
    header = ChatHeader()
    qtbot.addWidget(header)
    header.show_chat(None, [])
    assert not header.adapters_button.isEnabled()
    assert header.adapters_button.text() == "Adapters: none"
    chat = Chat(1, "A chat", "model", [], 0.0, 0.0, adapters=[("gone", 0.3)])
    header.show_chat(chat, [])
    assert header.adapters_button.isEnabled()
    assert header.adapters_picker.rows["gone"][0].text() == "gone (missing)"
    assert header.adapters_picker.rows["gone"][1].value() == pytest.approx(0.3)
    chosen: list[list[tuple[str, float]]] = []
    header.adapters_chosen.connect(chosen.append)
    header.adapters_picker.rows["gone"][1].setValue(0.4)
    assert chosen == [[("gone", 0.4)]]
    assert describe_adapters([("a", 1.0), ("b", -0.5)]) == "a ×1, b ×-0.5"
