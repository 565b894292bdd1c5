"""The chat page: chats on the left; on the right the conversation, its mode, collections and
LoRA adapters, and the question box. Answers stream from the core thread one token at a time.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import Qt, QUrl, Signal
from PySide6.QtGui import QGuiApplication, QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from bastion.desktop.gui import core_tasks
from bastion.desktop.gui.backend import Backend
from bastion.desktop.gui.chat_composer import ChatComposer
from bastion.desktop.gui.chat_header import ChatHeader
from bastion.desktop.gui.chat_list_model import ChatListModel, MessageItem, MessageListModel
from bastion.desktop.gui.chat_sidebar import ChatSidebar
from bastion.desktop.gui.message_list_view import MessageListView
from bastion.desktop.gui.model_notice_bar import ModelNoticeBar, model_notes
from bastion.desktop.gui.source_pane import SourcePane
from bastion.desktop.gui.workers import Job

if TYPE_CHECKING:
    from bastion.desktop.grounding import Mode
    from bastion.models.adapter_catalog import AdapterEntry
    from bastion.models.engine_types import LoadInfo
    from bastion.store.chats import Chat, Message, Source


class ChatView(QWidget):
    """Chats and answers, driven through the backend's core thread."""

    status_message = Signal(str)
    answer_finished = Signal(dict)  # the stored answer's meta (timings, model)
    busy_changed = Signal(bool)

    def __init__(self, backend: Backend, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.backend = backend
        self.chats = ChatListModel()
        self.messages = MessageListModel()
        self.chat: Chat | None = None
        self.collection_names: list[str] = []
        self.adapter_entries: list[AdapterEntry] = []  # the imported adapters (Models page)
        self.answer_job: Job | None = None
        self._stream_chat: int | None = None
        self._stream_text = ""
        self._edit_id: int | None = None
        self._events_seen, self._asked = 0, ""
        self._loading: str | None = None  # the model being loaded, shown until it is ready
        self._build()

    # -- layout ----------------------------------------------------------------------------

    def _build(self) -> None:
        splitter = QSplitter(Qt.Orientation.Horizontal, self)
        self.sidebar = ChatSidebar(self.chats)
        self.sidebar.chat_selected.connect(self.open_chat)
        self.sidebar.new_requested.connect(self.new_chat)
        self.sidebar.rename_requested.connect(lambda chat, title: self.rename_chat(chat.id, title))
        self.sidebar.delete_requested.connect(lambda chat: self.delete_chat(chat.id))
        self.sidebar.search_changed.connect(self.search_chats)
        splitter.addWidget(self.sidebar)

        right = QWidget()
        column = QVBoxLayout(right)
        column.setContentsMargins(4, 8, 8, 8)
        column.setSpacing(6)
        self.header = ChatHeader()
        self.header.mode_chosen.connect(self.set_mode)
        self.header.collections_chosen.connect(self.set_collections)
        self.header.adapters_chosen.connect(self.set_adapters)
        column.addWidget(self.header)
        self.model_notice = ModelNoticeBar()
        column.addWidget(self.model_notice)

        self.message_list = MessageListView(self.messages)
        self.message_list.copy_requested.connect(self.copy_message)
        self.message_list.regenerate_requested.connect(lambda _row: self.regenerate())
        self.message_list.edit_requested.connect(self.start_edit)
        self.message_list.link_clicked.connect(self._link_clicked)
        self.message_list.source_activated.connect(self.open_source)
        self.message_list.good_toggled.connect(self.mark_good)
        column.addWidget(self.message_list, 1)

        self.composer = ChatComposer()
        self.composer.send_requested.connect(self.send)
        self.composer.stop_requested.connect(self.stop)
        self.composer.cancel_edit_requested.connect(self.cancel_edit)
        # The composer's parts, as the rest of the window and the tests know them.
        self.input = self.composer.input
        self.send_button, self.stop_button = self.composer.send_button, self.composer.stop_button
        self.edit_banner = self.composer.edit_banner
        column.addWidget(self.composer)
        splitter.addWidget(right)
        self.preview = SourcePane(self.backend, lambda: self.busy)
        self.preview.status_message.connect(self.status_message)
        splitter.addWidget(self.preview)
        splitter.setStretchFactor(1, 1)
        splitter.setSizes([250, 850, 380])
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(splitter)
        self._show_chat_settings()
        # Esc stops an answer, Ctrl+N starts a chat, Ctrl+F searches the chats.
        QShortcut(QKeySequence(Qt.Key.Key_Escape), self, self.stop)
        QShortcut(QKeySequence(QKeySequence.StandardKey.New), self, self.new_chat)
        QShortcut(QKeySequence(QKeySequence.StandardKey.Find), self,
                  lambda: self.sidebar.search.setFocus())

    # -- chats -----------------------------------------------------------------------------

    def show_chats(self, chats: Sequence[Chat]) -> None:
        """First paint: the stored chats; opens the newest, or a new chat when there is none."""
        self.chats.set_chats(chats)
        if chats:
            self.sidebar.select(chats[0].id)
            self.open_chat(chats[0])
        else:
            self.new_chat()

    def search_chats(self, text: str) -> None:
        self.backend.run(self.backend.core, partial(core_tasks.list_chats, search=text),
                         "search the chats", on_result=self._show_search)

    def _show_search(self, chats: list[Chat]) -> None:
        self.chats.set_chats(chats)
        if self.chat is not None:
            self.sidebar.select(self.chat.id)

    def new_chat(self) -> None:
        mode: Mode = self.chat.mode if self.chat else "model"
        collections = self.chat.collections if self.chat else []
        adapters = self.chat.adapters if self.chat else []
        self.backend.run(self.backend.core,
                         partial(core_tasks.create_chat, mode=mode, collections=collections,
                                 adapters=adapters),
                         "start a new chat", on_result=self._chat_created)

    def _chat_created(self, chat: Chat) -> None:
        self.chats.upsert(chat)
        self.sidebar.select(chat.id)
        self._show(chat, [])

    def open_chat(self, chat: Chat) -> None:
        self.backend.run(self.backend.core, partial(core_tasks.chat_messages, chat_id=chat.id),
                         "open the chat", on_result=lambda synced: self._show(synced.chat,
                                                                              synced.messages))

    def _show(self, chat: Chat, messages: Sequence[Any]) -> None:
        self.chat = chat
        self.cancel_edit()
        self.messages.set_messages(chat.id, messages)
        if self._stream_chat == chat.id:  # back on the chat that is answering
            row = self.messages.last_row("assistant")
            if row is not None:
                self.messages.update(row, text=self._stream_text, status="streaming")
        self._show_chat_settings()
        self.input.setFocus()

    def rename_chat(self, chat_id: int, title: str) -> None:
        self.backend.run(self.backend.core, partial(core_tasks.update_chat, chat_id=chat_id,
                                                    title=title),
                         "rename the chat", on_result=self._chat_updated)

    def delete_chat(self, chat_id: int) -> None:
        if chat_id == self._stream_chat:
            self.status_message.emit("Stop the answer before deleting its chat.")
            return
        self.backend.run(self.backend.core, partial(core_tasks.delete_chat, chat_id=chat_id),
                         "delete the chat", on_result=self._chat_deleted)

    def _chat_deleted(self, chat_id: int) -> None:
        self.chats.remove(chat_id)
        if self.chat is not None and self.chat.id == chat_id:
            self.chat = None
            if self.chats.rowCount():
                first = self.chats.chat(0)
                self.sidebar.select(first.id)
                self.open_chat(first)
            else:
                self.messages.set_messages(None, [])
                self.new_chat()

    def _chat_updated(self, chat: Chat) -> None:
        row = self.chats.row_of(chat.id)
        if row is not None:
            self.chats.upsert(chat)
            self.sidebar.select(chat.id)
        if self.chat is not None and self.chat.id == chat.id:
            self.chat = chat
            self._show_chat_settings()

    # -- mode, collections and adapters ----------------------------------------------------

    def set_collection_names(self, names: Sequence[str]) -> None:
        """The collections that exist (from the Library page)."""
        self.collection_names = list(names)
        self._show_chat_settings()

    def set_mode(self, mode: Mode) -> None:
        if self.chat is not None and mode != self.chat.mode:
            self.backend.run(self.backend.core,
                             partial(core_tasks.update_chat, chat_id=self.chat.id, mode=mode),
                             "change the chat's mode", on_result=self._chat_updated)

    def set_collections(self, names: Sequence[str]) -> None:
        if self.chat is not None:
            self.backend.run(self.backend.core, partial(core_tasks.update_chat, chat_id=self.chat.id,
                                                        collections=list(names)),
                             "choose the collections", on_result=self._chat_updated)

    def set_adapter_entries(self, entries: Sequence[AdapterEntry]) -> None:
        """The LoRA adapters that are imported (from the Models page)."""
        self.adapter_entries = list(entries)
        self._show_chat_settings()

    def set_adapters(self, adapters: Sequence[tuple[str, float]]) -> None:
        """Answer this chat with ``adapters`` (name, scale) from its next answer on."""
        if self.chat is not None:
            self.backend.run(self.backend.core, partial(core_tasks.update_chat, chat_id=self.chat.id,
                                                        adapters=list(adapters)),
                             "choose the adapters", on_result=self._chat_updated)

    def show_model(self, info: LoadInfo | None) -> None:
        """The loaded model: what is wrong with it shows in the bar above the answers."""
        self.model_notice.show_notes(model_notes(info), info.name if info else None)

    def show_loading(self, name: str | None) -> None:
        """While the model loads (``name``), say so where the answers will appear."""
        self._loading = name
        self._show_chat_settings()

    def _show_chat_settings(self) -> None:
        chat = self.chat
        self.header.show_chat(chat, self.collection_names, self.adapter_entries)
        if self._loading:
            self.message_list.set_placeholder(f"Loading {self._loading}… You can type your "
                                              "question already; it is answered once it loads.")
        elif chat is not None and chat.mode != "model" and not chat.collections:
            self.message_list.set_placeholder("Choose a collection to search (Collections ▾), or "
                                              "switch to “Model only”.")
        else:
            self.message_list.set_placeholder("Ask a question to start.")

    # -- answering -------------------------------------------------------------------------

    @property
    def busy(self) -> bool:
        return self.answer_job is not None

    def send(self) -> None:
        """Ask the question in the box (or resend an edited one)."""
        if self.busy or self.chat is None:
            return
        text = self.composer.take_text()
        if not text:
            return
        if self._edit_id is not None:
            row = next((i for i, m in enumerate(self.messages.items()) if m.id == self._edit_id), None)
            message_id = self._edit_id
            self.cancel_edit()
            if row is not None:
                self.messages.remove_from(row)
            self._start("edit", text, message_id)
        else:
            self._start("ask", text)

    def regenerate(self) -> None:
        """Answer the chat's last question again."""
        row = self.messages.last_row("user")
        if self.busy or self.chat is None or row is None:
            return
        self.messages.remove_from(row + 1)
        self._start("regenerate")

    def _start(self, kind: core_tasks.AnswerKind, text: str = "", message_id: int | None = None) -> None:
        assert self.chat is not None
        if kind != "regenerate":
            self.messages.append(MessageItem("user", text))
        self.messages.append(MessageItem("assistant", "", "streaming",
                                         note="Searching your documents…"
                                         if self.chat.mode != "model" else ""))
        self._stream_chat, self._stream_text = self.chat.id, ""
        self._events_seen, self._asked = 0, (text if kind != "regenerate" else "")
        self.message_list.scroll_to_bottom()
        self.answer_job = self.backend.run(
            self.backend.core,
            partial(core_tasks.answer, chat_id=self.chat.id, kind=kind, text=text,
                    message_id=message_id),
            "answer the question",
            on_yield=self._on_event, on_error=self._on_error, on_finished=self._on_finished)
        self._set_busy(True)

    def stop(self) -> None:
        """Stop the answer; what was generated is kept, marked as stopped."""
        if self.answer_job is not None:
            self.answer_job.cancel()
            self.status_message.emit("Stopping…")

    def _stream_row(self) -> int | None:
        if self.messages.chat_id != self._stream_chat:
            return None  # another chat is on screen; the answer is still stored
        row = self.messages.last_row("assistant")
        return row if row is not None and self.messages.item(row).status == "streaming" else None

    def _on_event(self, event: object) -> None:
        from bastion.desktop.assistant import AnswerDelta, AnswerDone, PassagesFound

        self._events_seen += 1
        row = self._stream_row()
        if isinstance(event, AnswerDelta):
            self._stream_text += event.text
            if row is not None:
                if self.messages.item(row).note:
                    self.messages.update(row, note="")
                self.messages.append_text(row, event.text)
        elif isinstance(event, PassagesFound) and row is not None:
            found = len(event.sources)
            note = (f"Found {found} relevant passage{'s' if found != 1 else ''} "
                    f"in {event.retrieval_ms:.0f} ms; answering…" if found
                    else "No relevant passages found.")
            self.messages.update(row, sources=list(event.sources), note=note)
        elif isinstance(event, core_tasks.ModelLoading):
            self.status_message.emit(f"Loading {event.name}…")
            if row is not None:
                self.messages.update(row, note="Loading the model…")
        elif isinstance(event, AnswerDone):
            if row is not None:
                self.messages.update(row, **vars(MessageItem.of(event.message)))
            self.answer_finished.emit(dict(event.message.meta))
        elif isinstance(event, core_tasks.ChatSynced):
            self._chat_updated(event.chat)
            if self.messages.chat_id == event.chat.id:
                self.messages.sync(event.messages)

    def _on_error(self, error: BaseException) -> bool:
        self._events_seen += 1
        row = self._stream_row()
        if row is not None:
            self.messages.update(row, status="failed", note="")
        chat_id = self._stream_chat
        if chat_id is not None and self.messages.chat_id == chat_id:
            # What was stored (the question, any partial answer) is the truth.
            self.backend.run(self.backend.core, partial(core_tasks.chat_messages, chat_id=chat_id),
                             "reload the chat", on_result=self._resync)
        return True  # and show the dialog

    def _resync(self, synced: core_tasks.ChatSynced) -> None:
        if self.messages.chat_id == synced.chat.id:
            self.messages.sync(synced.messages)

    def _on_finished(self) -> None:
        chat_id, never_ran = self._stream_chat, self._events_seen == 0
        self.answer_job = None
        self._stream_chat = None
        self._set_busy(False)
        if never_ran and chat_id is not None:
            # Stopped before it started: nothing was stored. Give the question back and show
            # the chat as stored.
            if self._asked and not self.input.toPlainText().strip():
                self.input.setPlainText(self._asked)
            self.status_message.emit("Stopped before the answer began; nothing was sent.")
            self.backend.run(self.backend.core, partial(core_tasks.chat_messages, chat_id=chat_id),
                             "reload the chat", on_result=self._resync)

    def _set_busy(self, busy: bool) -> None:
        self.composer.set_busy(busy)
        self.message_list.set_actions_enabled(not busy)
        self.busy_changed.emit(busy)

    # -- message actions -------------------------------------------------------------------

    def copy_message(self, row: int) -> None:
        QGuiApplication.clipboard().setText(self.messages.item(row).text)
        self.status_message.emit("Copied.")

    def mark_good(self, row: int, good: bool) -> None:
        """Store the user's "✓ good answer" mark (or its removal) on the answer in ``row``."""
        message_id = self.messages.item(row).id
        if message_id is not None:
            self.backend.run(self.backend.core, partial(core_tasks.mark_answer, message_id=message_id,
                                                        good=good),
                             "mark the answer", on_result=self._answer_marked,
                             on_error=self._mark_failed)

    def _mark_failed(self, error: BaseException) -> bool:
        self._answer_marked(None)
        return True  # and the error is reported as any other

    def _answer_marked(self, message: Message | None) -> None:
        if message is None:  # the mark was not stored: show the answers as stored
            if self.chat is not None:
                self.open_chat(self.chat)
            return
        row = next((i for i, item in enumerate(self.messages.items()) if item.id == message.id), None)
        if row is not None:
            self.messages.update(row, marked_good=message.marked_good)
        self.status_message.emit("Marked as a good answer: `bastion lab questions-from-chats` "
                                 "makes a question set of these." if message.marked_good
                                 else "No longer marked as a good answer.")

    def start_edit(self, row: int) -> None:
        item = self.messages.item(row)
        if self.busy or item.role != "user" or item.id is None:
            return
        self._edit_id = item.id
        self.composer.show_editing(item.text)

    def cancel_edit(self) -> None:
        if self._edit_id is not None:
            self.input.clear()
        self._edit_id = None
        self.composer.show_editing(None)

    def open_source(self, source: Source) -> None:
        """Preview the cited passage of ``source`` beside the chat."""
        self.preview.open_source(source)

    def open_document(self, preview: Any, at_page: bool) -> None:
        """Open the previewed file, at its page when ``at_page`` and a viewer can."""
        self.preview.open_document(preview, at_page)

    @property
    def document_opener(self) -> Any:
        """Opens a file at a page (``open_document.open_document``); tests inject their own."""
        return self.preview.document_opener

    @document_opener.setter
    def document_opener(self, opener: Any) -> None:
        self.preview.document_opener = opener

    def _link_clicked(self, url: QUrl) -> None:
        # Links in answers are never followed automatically: a model or a document wrote them.
        QGuiApplication.clipboard().setText(url.toString())
        self.status_message.emit(f"Link copied, not opened: {url.toString()}")
