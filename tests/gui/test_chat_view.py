"""The chat page over a real backend with a scripted engine: streaming, stop, regenerate,
edit-and-resend, copy, chat list actions, sources, and the list models' contracts."""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtCore import QUrl
from PySide6.QtGui import QGuiApplication

from bastion.desktop.gui.chat_list_model import ChatListModel, MessageItem, MessageListModel
from bastion.desktop.gui.main_window import MainWindow
from bastion.store.chats import Chat, ChatStore, Source
from tests.gui.fakes import StreamingEngine

pytestmark = pytest.mark.qt_log_ignore("propagateSizeHints")


def ask(qtbot, win: MainWindow, text: str) -> None:
    view = win.chat_view
    view.input.setPlainText(text)
    view.send()
    qtbot.waitUntil(lambda: not view.busy, timeout=10000)


def stored_messages(home: Path, chat_id: int):
    store = ChatStore(home / "bastion.db")
    try:
        return store.messages(chat_id)
    finally:
        store.close()


def test_answer_streams_into_one_row_without_resets(qtbot, window: MainWindow,
                                                    bastion_home: Path) -> None:
    view = window.chat_view
    resets: list[int] = []
    changes: list[int] = []
    view.messages.modelReset.connect(lambda: resets.append(1))
    view.messages.dataChanged.connect(lambda a, b, roles=None: changes.append(a.row()))
    ask(qtbot, window, "What is the answer?")

    items = view.messages.items()
    assert [i.role for i in items] == ["user", "assistant"]
    assert items[1].text == "The answer is **42** [1]."
    assert items[1].status == "complete"
    assert items[0].id is not None and items[1].id is not None  # synced with the store
    assert resets == []  # fed incrementally, never reset per token
    assert changes.count(1) >= 5  # one change per streamed word, on the answer's row only
    card = view.message_list.widgets[1]
    assert "<b>42</b>" in card.body.toHtml() or "font-weight" in card.body.toHtml()
    assert "tokens/s" in card.stats.text() and "first token" in card.stats.text()
    assert "tokens/s" in window.speed_label.text()
    stored = stored_messages(bastion_home, view.chat.id)
    assert [m.content for m in stored] == ["What is the answer?", "The answer is **42** [1]."]
    assert view.chat.title == "What is the answer?"
    assert view.chats.chat(0).title == "What is the answer?"


def test_stop_keeps_the_partial_answer_marked_stopped(qtbot, window: MainWindow,
                                                      engine: StreamingEngine,
                                                      bastion_home: Path) -> None:
    engine.reply = " ".join(f"word{i}" for i in range(400))
    engine.delay_s = 0.01
    view = window.chat_view
    view.input.setPlainText("Tell me a long story")
    view.send()
    assert view.stop_button.isEnabled() and not view.send_button.isEnabled()
    qtbot.waitUntil(lambda: "word3" in view.messages.item(1).text, timeout=5000)
    view.stop_button.click()
    qtbot.waitUntil(lambda: not view.busy, timeout=5000)
    answer = view.messages.item(1)
    assert answer.status == "interrupted"
    assert 0 < len(answer.text.split()) < 400
    assert "stopped" in view.message_list.widgets[1].stats.text()
    stored = stored_messages(bastion_home, view.chat.id)
    assert stored[-1].status == "interrupted" and stored[-1].content == answer.text


def test_regenerate_replaces_the_last_answer(qtbot, window: MainWindow,
                                             engine: StreamingEngine, bastion_home: Path) -> None:
    view = window.chat_view
    ask(qtbot, window, "First question")
    engine.reply = "A better answer."
    view.message_list.widgets[1].regenerate_button.click()
    qtbot.waitUntil(lambda: not view.busy and view.messages.item(1).text == "A better answer.",
                    timeout=5000)
    assert [m.content for m in stored_messages(bastion_home, view.chat.id)] == [
        "First question", "A better answer."]


def test_edit_and_resend_replaces_the_question_and_what_follows(
        qtbot, window: MainWindow, engine: StreamingEngine, bastion_home: Path) -> None:
    view = window.chat_view
    ask(qtbot, window, "Question one")
    ask(qtbot, window, "Question two")
    view.message_list.widgets[0].edit_button.click()
    assert view.edit_banner.isVisible()
    assert view.input.toPlainText() == "Question one"
    engine.reply = "Edited answer."
    view.input.setPlainText("Question one, edited")
    view.send()
    qtbot.waitUntil(lambda: not view.busy, timeout=5000)
    assert [i.text for i in view.messages.items()] == ["Question one, edited", "Edited answer."]
    assert [m.content for m in stored_messages(bastion_home, view.chat.id)] == [
        "Question one, edited", "Edited answer."]


def test_copy_puts_the_message_on_the_clipboard(qtbot, window: MainWindow) -> None:
    ask(qtbot, window, "Copy me")
    window.chat_view.message_list.widgets[1].copy_button.click()
    assert QGuiApplication.clipboard().text() == "The answer is **42** [1]."


def test_new_rename_search_delete_chats(qtbot, window: MainWindow) -> None:
    view = window.chat_view
    ask(qtbot, window, "About apples")
    view.new_chat()
    qtbot.waitUntil(lambda: view.chats.rowCount() == 2 and view.messages.rowCount() == 0)
    ask(qtbot, window, "About pears")
    pears = view.chat
    view.rename_chat(pears.id, "Pear notes")
    qtbot.waitUntil(lambda: view.chats.chat(0).title == "Pear notes")
    assert view.header.title.text() == "Pear notes"

    view.search_chats("apple")
    qtbot.waitUntil(lambda: view.chats.rowCount() == 1)
    assert view.chats.chat(0).title == "About apples"
    view.search_chats("")
    qtbot.waitUntil(lambda: view.chats.rowCount() == 2)

    view.delete_chat(pears.id)
    qtbot.waitUntil(lambda: view.chats.rowCount() == 1 and view.chat is not None
                    and view.chat.id != pears.id)
    qtbot.waitUntil(lambda: [i.text for i in view.messages.items()][:1] == ["About apples"])


def test_documents_mode_shows_sources_and_opens_them(qtbot, window: MainWindow,
                                                     tmp_path: Path) -> None:
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "answer.txt").write_text("The answer to everything is 42, says the guide.\n")
    library = window.library_view
    library.add_folder(folder, "guide")
    qtbot.waitUntil(lambda: library.model.status_of("guide") is not None
                    and library.model.status_of("guide").counts.get("indexed") == 1,
                    timeout=20000)
    view = window.chat_view
    qtbot.waitUntil(lambda: "guide" in view.collection_names)
    view.set_mode("docs")
    qtbot.waitUntil(lambda: view.chat.mode == "docs")
    view.set_collections(["guide"])
    qtbot.waitUntil(lambda: view.chat.collections == ["guide"])
    ask(qtbot, window, "What is the answer to everything?")

    answer = view.messages.item(1)
    assert answer.sources and answer.sources[0].path.endswith("answer.txt")
    assert answer.sources[0].cited  # the scripted reply cites [1]
    card = view.message_list.widgets[1]
    assert card.sources.isVisibleTo(card) and len(card.sources.rows) == len(answer.sources)
    assert "answer.txt" in card.sources.rows[0].title_label.text()

    # A click previews the passage beside the chat; the file opens from there.
    card.sources.rows[0].activated.emit(card.sources.rows[0].source)
    qtbot.waitUntil(lambda: view.preview.preview is not None, timeout=10000)
    assert view.preview.isVisibleTo(view) and "answer.txt" in view.preview.title.text()
    assert "42, says the guide" in view.preview.highlighted_text()


def test_previewing_a_vanished_source_says_what_to_do(qtbot, window: MainWindow,
                                                      tmp_path: Path) -> None:
    view = window.chat_view
    view.open_source(Source(1, str(tmp_path / "gone.pdf"), 3, "snippet", 0.1, "guide", 0, 7))
    qtbot.waitUntil(lambda: view.preview.preview is not None, timeout=10000)
    assert "no longer in the collection “guide”" in view.preview.problem.text()
    assert not view.preview.open_button.isEnabled()


def test_links_in_answers_are_not_followed(qtbot, window: MainWindow,
                                           engine: StreamingEngine) -> None:
    engine.reply = "See [the site](http://example.com/x) and ![img](http://example.com/i.png)"
    ask(qtbot, window, "Links?")
    card = window.chat_view.message_list.widgets[1]
    assert card.body.openLinks() is False and card.body.openExternalLinks() is False
    card.body.anchorClicked.emit(QUrl("http://example.com/x"))
    assert QGuiApplication.clipboard().text() == "http://example.com/x"
    assert card.body.source().isEmpty()  # nothing was navigated to


def test_chat_models_pass_the_model_tester(qtmodeltester) -> None:
    chats = ChatListModel()
    chats.set_chats([Chat(i, f"chat {i}", "model", [], 0.0, 0.0) for i in range(3)])
    chats.upsert(Chat(2, "moved up", "docs", ["a"], 0.0, 1.0))
    chats.remove(1)
    qtmodeltester.check(chats)

    messages = MessageListModel()
    messages.append(MessageItem("user", "hi"))
    row = messages.append(MessageItem("assistant", "", "streaming"))
    messages.append_text(row, "Hello")
    messages.update(row, status="complete")
    qtmodeltester.check(messages)
    messages.remove_from(1)
    qtmodeltester.check(messages)
    assert messages.rowCount() == 1


def test_while_the_model_loads_the_chat_says_so(qtbot, window: MainWindow) -> None:
    view = window.chat_view
    view.show_loading("SmolLM2-135M-Instruct.Q4_1")
    assert "Loading SmolLM2-135M-Instruct.Q4_1" in view.message_list.placeholder.text()
    window.set_model_info(window.model_info)  # loaded
    assert view.message_list.placeholder.text() == "Ask a question to start."


def test_stop_pressed_before_generation_starts_still_stops(qtbot, window: MainWindow,
                                                           engine: StreamingEngine) -> None:
    engine.reply = " ".join(f"w{i}" for i in range(400))
    engine.delay_s = 0.01
    view = window.chat_view
    view.input.setPlainText("Stop me early")
    view.send()
    view.stop()  # before the engine has started this answer
    qtbot.waitUntil(lambda: not view.busy, timeout=10000)
    qtbot.waitUntil(lambda: all(i.status != "streaming" for i in view.messages.items()),
                    timeout=5000)
    items = view.messages.items()
    if items:  # it had started: the question is stored, the answer stopped almost at once
        assert [i.role for i in items] == ["user", "assistant"]
        assert items[1].status == "interrupted" and len(items[1].text.split()) < 50
    else:  # it had not: nothing stored, and the question is back in the box
        assert view.input.toPlainText() == "Stop me early"
