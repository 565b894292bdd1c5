"""The "✓ good answer" toggle under an answer: shown for a stored, finished answer only, stored
through the core thread, and what ``bastion lab questions-from-chats`` reads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PySide6.QtCore import Qt

from bastion.desktop.cli import main
from bastion.desktop.gui.chat_list_model import MessageItem
from bastion.desktop.gui.main_window import MainWindow
from bastion.desktop.gui.message_view import MessageWidget
from bastion.store.chats import ChatStore

pytestmark = pytest.mark.qt_log_ignore("propagateSizeHints")  # the offscreen plugin's notice


def test_the_toggle_is_offered_on_finished_answers_only(qtbot) -> None:
    question = MessageWidget(MessageItem("user", "Who?", "complete", id=1))
    streaming = MessageWidget(MessageItem("assistant", "Mar", "streaming"))
    answer = MessageWidget(MessageItem("assistant", "Marta.", "complete", id=2, marked_good=True))
    for widget in (question, streaming, answer):
        qtbot.addWidget(widget)
        widget.show()
    assert question.good_button is None
    assert streaming.good_button is not None and not streaming.good_button.isVisible()
    assert answer.good_button is not None and answer.good_button.isVisible()
    assert answer.good_button.isChecked()  # a stored mark is shown…
    toggles: list[tuple[object, bool]] = []
    answer.good_toggled.connect(lambda widget, good: toggles.append((widget, good)))
    answer.set_item(MessageItem("assistant", "Marta.", "complete", id=2, marked_good=False))
    assert not answer.good_button.isChecked() and toggles == []  # …without storing it again
    qtbot.mouseClick(answer.good_button, Qt.MouseButton.LeftButton)
    assert toggles == [(answer, True)]


def test_marking_an_answer_in_the_window_stores_it(qtbot, window: MainWindow, bastion_home: Path,
                                                   tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    view = window.chat_view
    view.input.setPlainText("What is the answer?")
    view.send()
    qtbot.waitUntil(lambda: not view.busy, timeout=10000)
    card = view.message_list.widgets[1]
    qtbot.waitUntil(lambda: card.good_button is not None and card.good_button.isVisible(), timeout=5000)
    assert card.good_button is not None

    def stored() -> bool:
        store = ChatStore(bastion_home / "bastion.db")
        try:
            return store.messages(view.chat.id)[1].marked_good
        finally:
            store.close()

    qtbot.mouseClick(card.good_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: view.messages.item(1).marked_good, timeout=5000)
    assert stored() and card.good_button.isChecked()

    out = tmp_path / "marked.jsonl"
    assert main(["lab", "questions-from-chats", str(out)]) == 0
    capsys.readouterr()
    [row] = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert row["question"] == "What is the answer?" and row["answers"] == ["The answer is **42**."]

    qtbot.mouseClick(card.good_button, Qt.MouseButton.LeftButton)  # taken back
    qtbot.waitUntil(lambda: not view.messages.item(1).marked_good, timeout=5000)
    assert not stored() and not card.good_button.isChecked()


def test_the_lab_page_makes_a_question_set_from_marked_answers(qtbot, window: MainWindow,
                                                               bastion_home: Path, tmp_path: Path) -> None:
    store = ChatStore(bastion_home / "bastion.db")
    chat = store.create_chat()
    store.add_message(chat.id, "user", "Who founded the company?")
    store.mark_good(store.add_message(chat.id, "assistant", "Marta Quell founded it [1].").id)
    store.close()
    page = window.pages["lab"]
    out = tmp_path / "marked.jsonl"
    out.write_text("old\n", encoding="utf-8")  # the save dialog asked before replacing it
    page.make_question_set(out)
    qtbot.waitUntil(lambda: page.questions_edit.text() == str(out), timeout=5000)
    assert "1 question from your marked answers, scored by token F1" in page.status.text()
    [row] = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert row["answers"] == ["Marta Quell founded it."] and row["match"] == "f1"
