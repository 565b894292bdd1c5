"""The bar above a conversation: its title, where answers come from, and which collections."""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QAction, QPainter, QPaintEvent
from PySide6.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QLabel,
    QMenu,
    QSizePolicy,
    QToolButton,
    QWidget,
)

from bastion.desktop.grounding import Mode
from bastion.store.chats import Chat

MODE_LABELS: dict[Mode, str] = {
    "model": "Model only",
    "docs": "Documents only",
    "both": "Model + documents",
}


class ElidedLabel(QLabel):
    """A one-line label that ends in "…" instead of pushing its neighbours away."""

    def __init__(self, text: str = "", parent: QWidget | None = None) -> None:
        super().__init__(text, parent)
        self.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)

    def minimumSizeHint(self) -> QSize:
        return QSize(40, super().minimumSizeHint().height())

    def paintEvent(self, event: QPaintEvent) -> None:
        painter = QPainter(self)
        metrics = painter.fontMetrics()
        text = metrics.elidedText(self.text(), Qt.TextElideMode.ElideRight, self.width())
        painter.drawText(self.rect(), int(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter),
                         text)


class ChatHeader(QWidget):
    """Title, mode chooser and collections chooser of the chat on screen."""

    mode_chosen = Signal(str)
    collections_chosen = Signal(list)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.title = ElidedLabel("")
        self.title.setObjectName("chatTitle")
        layout.addWidget(self.title, 1)
        layout.addWidget(QLabel("Answer from:"))
        self.mode = QComboBox()
        self.mode.setObjectName("modeCombo")
        for mode, label in MODE_LABELS.items():
            self.mode.addItem(label, mode)
        self.mode.activated.connect(lambda _i: self.mode_chosen.emit(self.mode.currentData()))
        layout.addWidget(self.mode)
        self.collections_button = QToolButton()
        self.collections_button.setObjectName("collectionsButton")
        self.collections_button.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        self.collections_menu = QMenu(self.collections_button)
        self.collections_button.setMenu(self.collections_menu)
        layout.addWidget(self.collections_button)
        self.chat: Chat | None = None
        self.names: list[str] = []

    def show_chat(self, chat: Chat | None, names: Sequence[str]) -> None:
        """Show ``chat``'s settings; ``names`` are the collections that exist."""
        self.chat, self.names = chat, list(names)
        self.title.setText(chat.title if chat else "")
        self.title.setToolTip(chat.title if chat else "")
        self.mode.setEnabled(chat is not None)
        if chat is not None:
            self.mode.setCurrentIndex(self.mode.findData(chat.mode))
        chosen = set(chat.collections) if chat else set()
        self.collections_menu.clear()
        for name in sorted(set(self.names) | chosen):
            action = QAction(name, self.collections_menu)
            action.setCheckable(True)
            action.setChecked(name in chosen)
            action.toggled.connect(partial(self._toggled, name))
            self.collections_menu.addAction(action)
        if not self.collections_menu.actions():
            empty = QAction("No collections yet: add a folder on the Library page",
                            self.collections_menu)
            empty.setEnabled(False)
            self.collections_menu.addAction(empty)
        label = ", ".join(sorted(chosen)) if chosen else "none"
        self.collections_button.setText(f"Collections: {label}")
        self.collections_button.setEnabled(chat is not None and chat.mode != "model")

    def _toggled(self, name: str, checked: bool) -> None:
        chosen = set(self.chat.collections) if self.chat else set()
        (chosen.add if checked else chosen.discard)(name)
        self.collections_chosen.emit(sorted(chosen))
