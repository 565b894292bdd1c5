"""The list of chats: search by title, new, rename, delete. Emits requests only."""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtCore import QItemSelectionModel, QModelIndex, Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QHBoxLayout,
    QInputDialog,
    QLineEdit,
    QListView,
    QMessageBox,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from bastion.desktop.gui.chat_list_model import ChatListModel

if TYPE_CHECKING:
    from bastion.store.chats import Chat

SEARCH_DELAY_MS = 200


class ChatSidebar(QWidget):
    """Search box, chat list and the chat actions."""

    chat_selected = Signal(object)  # Chat
    new_requested = Signal()
    rename_requested = Signal(object, str)  # Chat, new title
    delete_requested = Signal(object)  # Chat
    search_changed = Signal(str)

    def __init__(self, model: ChatListModel, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.model = model
        self.setObjectName("chatSidebar")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 8, 4, 8)
        layout.setSpacing(6)

        self.new_button = QPushButton("New chat")
        self.new_button.setObjectName("newChatButton")
        self.new_button.clicked.connect(self.new_requested)
        layout.addWidget(self.new_button)

        self.search = QLineEdit()
        self.search.setPlaceholderText("Search chats")
        self.search.setClearButtonEnabled(True)
        layout.addWidget(self.search)
        self._search_timer = QTimer(self)
        self._search_timer.setSingleShot(True)
        self._search_timer.setInterval(SEARCH_DELAY_MS)
        self._search_timer.timeout.connect(lambda: self.search_changed.emit(self.search.text().strip()))
        self.search.textChanged.connect(lambda _text: self._search_timer.start())

        self.list = QListView()
        self.list.setObjectName("chatList")
        self.list.setModel(model)
        self.list.setUniformItemSizes(True)
        self.list.setTextElideMode(Qt.TextElideMode.ElideRight)
        self.list.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.list.setEditTriggers(QListView.EditTrigger.NoEditTriggers)
        self.list.selectionModel().currentChanged.connect(self._current_changed)
        layout.addWidget(self.list, 1)

        buttons = QHBoxLayout()
        self.rename_button = QPushButton("Rename…")
        self.rename_button.clicked.connect(self._ask_rename)
        self.delete_button = QPushButton("Delete…")
        self.delete_button.clicked.connect(self._ask_delete)
        buttons.addWidget(self.rename_button)
        buttons.addWidget(self.delete_button)
        layout.addLayout(buttons)
        self._selecting = False

    def current_chat(self) -> Chat | None:
        index = self.list.currentIndex()
        return self.model.chat(index.row()) if index.isValid() else None

    def select(self, chat_id: int, *, notify: bool = False) -> None:
        """Highlight ``chat_id`` (without emitting ``chat_selected`` unless ``notify``)."""
        row = self.model.row_of(chat_id)
        if row is None:
            return
        self._selecting = not notify
        try:
            self.list.selectionModel().setCurrentIndex(
                self.model.index(row), QItemSelectionModel.SelectionFlag.ClearAndSelect)
        finally:
            self._selecting = False

    def _current_changed(self, current: QModelIndex, previous: QModelIndex) -> None:
        if current.isValid() and not self._selecting:
            self.chat_selected.emit(self.model.chat(current.row()))

    def _ask_rename(self) -> None:
        chat = self.current_chat()
        if chat is None:
            return
        title, ok = QInputDialog.getText(self, "Rename chat", "New name:", QLineEdit.EchoMode.Normal,
                                         chat.title)
        if ok and title.strip():
            self.rename_requested.emit(chat, title.strip())

    def _ask_delete(self) -> None:
        chat = self.current_chat()
        if chat is None:
            return
        answer = QMessageBox.question(
            self, "Delete chat",
            f"Delete the chat “{chat.title}” and all its messages? This cannot be undone.",
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.Cancel,
            QMessageBox.StandardButton.Cancel)
        if answer == QMessageBox.StandardButton.Yes:
            self.delete_requested.emit(chat)

