"""List models of the chat page: the chats in the sidebar and the messages of one chat.

After qutebrowser's completion models: fed incrementally by the controller (rows inserted,
changed, removed), never reset per token. A streamed answer grows by ``append_text`` on its row,
which emits one ``dataChanged`` for that row only.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QAbstractListModel, QModelIndex, QPersistentModelIndex, Qt

if TYPE_CHECKING:
    from bastion.store.chats import Chat, Message, Source


Index = QModelIndex | QPersistentModelIndex

ROLE_ITEM = Qt.ItemDataRole.UserRole + 1  # the whole record
ROLE_ID = Qt.ItemDataRole.UserRole + 2
ROLE_STATUS = Qt.ItemDataRole.UserRole + 3


class ChatListModel(QAbstractListModel):
    """Chats, most recently updated first (as ``ChatStore.chats`` returns them)."""

    def __init__(self) -> None:
        super().__init__()
        self._chats: list[Chat] = []

    def rowCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008 - Qt's signature
        return 0 if parent.isValid() else len(self._chats)

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid() or not 0 <= index.row() < len(self._chats):
            return None
        chat = self._chats[index.row()]
        if role in (Qt.ItemDataRole.DisplayRole, Qt.ItemDataRole.ToolTipRole):
            return chat.title
        if role == ROLE_ITEM:
            return chat
        if role == ROLE_ID:
            return chat.id
        return None

    def set_chats(self, chats: Sequence[Chat]) -> None:
        """Replace the list (a new search, or the first load)."""
        self.beginResetModel()
        self._chats = list(chats)
        self.endResetModel()

    def chat(self, row: int) -> Chat:
        return self._chats[row]

    def row_of(self, chat_id: int) -> int | None:
        return next((i for i, c in enumerate(self._chats) if c.id == chat_id), None)

    def upsert(self, chat: Chat) -> int:
        """Put ``chat`` first (it was just created or used); returns its row (0)."""
        row = self.row_of(chat.id)
        if row == 0:
            self._chats[0] = chat
            top = self.index(0)
            self.dataChanged.emit(top, top)
            return 0
        if row is not None:
            self.beginRemoveRows(QModelIndex(), row, row)
            del self._chats[row]
            self.endRemoveRows()
        self.beginInsertRows(QModelIndex(), 0, 0)
        self._chats.insert(0, chat)
        self.endInsertRows()
        return 0

    def remove(self, chat_id: int) -> None:
        row = self.row_of(chat_id)
        if row is not None:
            self.beginRemoveRows(QModelIndex(), row, row)
            del self._chats[row]
            self.endRemoveRows()


@dataclass
class MessageItem:
    """One message as shown; ``id`` is None until the stored message is known."""

    role: str
    text: str
    status: str = "complete"
    id: int | None = None
    sources: list[Source] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)
    note: str = ""  # transient status under a streaming answer ("Searching your documents…")
    marked_good: bool = False  # the user marked this answer "✓ good answer"

    @classmethod
    def of(cls, message: Message) -> MessageItem:
        return cls(message.role, message.content, message.status, message.id,
                   list(message.sources), dict(message.meta), marked_good=message.marked_good)


class MessageListModel(QAbstractListModel):
    """The messages of the chat on screen."""

    def __init__(self) -> None:
        super().__init__()
        self._items: list[MessageItem] = []
        self.chat_id: int | None = None

    def rowCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008 - Qt's signature
        return 0 if parent.isValid() else len(self._items)

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid() or not 0 <= index.row() < len(self._items):
            return None
        item = self._items[index.row()]
        if role == Qt.ItemDataRole.DisplayRole:
            return item.text
        if role == ROLE_ITEM:
            return item
        if role == ROLE_ID:
            return item.id
        if role == ROLE_STATUS:
            return item.status
        return None

    def item(self, row: int) -> MessageItem:
        return self._items[row]

    def items(self) -> list[MessageItem]:
        return list(self._items)

    def set_messages(self, chat_id: int | None, messages: Sequence[Message]) -> None:
        """Show another chat (the only reset: switching chats)."""
        self.beginResetModel()
        self.chat_id = chat_id
        self._items = [MessageItem.of(m) for m in messages if m.role in ("user", "assistant")]
        self.endResetModel()

    def append(self, item: MessageItem) -> int:
        row = len(self._items)
        self.beginInsertRows(QModelIndex(), row, row)
        self._items.append(item)
        self.endInsertRows()
        return row

    def append_text(self, row: int, text: str) -> None:
        """A streamed piece of an answer: only this row changes."""
        self._items[row].text += text
        self._changed(row)

    def update(self, row: int, **changes: Any) -> None:
        self._items[row] = dataclasses.replace(self._items[row], **changes)
        self._changed(row)

    def remove_from(self, row: int) -> None:
        """Drop rows ``row`` and after (regenerate, edit-and-resend)."""
        if row < len(self._items):
            self.beginRemoveRows(QModelIndex(), row, len(self._items) - 1)
            del self._items[row:]
            self.endRemoveRows()

    def sync(self, messages: Sequence[Message]) -> None:
        """Take ids, statuses, sources and timings from the stored chat, row by row; falls back
        to a reset only if the rows no longer line up (another window changed the chat)."""
        stored = [m for m in messages if m.role in ("user", "assistant")]
        if len(stored) != len(self._items) or any(
            m.role != item.role for m, item in zip(stored, self._items, strict=True)
        ):
            self.set_messages(self.chat_id, stored)
            return
        for row, message in enumerate(stored):
            fresh = MessageItem.of(message)
            if fresh != self._items[row]:
                self._items[row] = fresh
                self._changed(row)

    def last_row(self, role: str) -> int | None:
        return next((i for i in range(len(self._items) - 1, -1, -1)
                     if self._items[i].role == role), None)

    def _changed(self, row: int) -> None:
        index = self.index(row)
        self.dataChanged.emit(index, index)
