"""The chat's question box: the text, Send and Stop, and the banner shown while a question is
being edited. It only reports what the user asked for; the chat view decides what happens."""

from __future__ import annotations

from PySide6.QtCore import QEvent, QObject, Qt, Signal
from PySide6.QtGui import QKeyEvent
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)


class ChatComposer(QWidget):
    """Enter sends, Shift+Enter adds a line; Send and Stop swap while an answer runs."""

    send_requested = Signal()
    stop_requested = Signal()
    cancel_edit_requested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        column = QVBoxLayout(self)
        column.setContentsMargins(0, 0, 0, 0)
        column.setSpacing(6)

        self.edit_banner = QWidget()
        banner = QHBoxLayout(self.edit_banner)
        banner.setContentsMargins(0, 0, 0, 0)
        banner.addWidget(QLabel("Editing a question: Send replaces it and everything after it."), 1)
        cancel_edit = QPushButton("Cancel edit")
        cancel_edit.clicked.connect(self.cancel_edit_requested)
        banner.addWidget(cancel_edit)
        self.edit_banner.setVisible(False)
        column.addWidget(self.edit_banner)

        row = QHBoxLayout()
        self.input = QPlainTextEdit()
        self.input.setObjectName("questionInput")
        self.input.setPlaceholderText("Ask a question (Enter sends, Shift+Enter adds a line)")
        self.input.setFixedHeight(72)
        self.input.installEventFilter(self)
        row.addWidget(self.input, 1)
        buttons = QVBoxLayout()
        self.send_button = QPushButton("Send")
        self.send_button.setObjectName("sendButton")
        self.send_button.setDefault(True)
        self.send_button.clicked.connect(self.send_requested)
        self.stop_button = QPushButton("Stop")
        self.stop_button.setObjectName("stopButton")
        self.stop_button.clicked.connect(self.stop_requested)
        self.stop_button.setEnabled(False)
        buttons.addWidget(self.send_button)
        buttons.addWidget(self.stop_button)
        row.addLayout(buttons)
        column.addLayout(row)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if (watched is self.input and event.type() == QEvent.Type.KeyPress
                and isinstance(event, QKeyEvent)
                and event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter)
                and not event.modifiers() & Qt.KeyboardModifier.ShiftModifier):
            self.send_requested.emit()
            return True
        return bool(super().eventFilter(watched, event))

    def take_text(self) -> str:
        """The question typed (stripped), leaving the box empty; "" leaves it as it was."""
        text = self.input.toPlainText().strip()
        if text:
            self.input.clear()
        return text

    def set_busy(self, busy: bool) -> None:
        self.send_button.setEnabled(not busy)
        self.stop_button.setEnabled(busy)

    def show_editing(self, text: str | None) -> None:
        """Put ``text`` (a question being edited) in the box with the banner; None ends it."""
        if text is None:
            self.edit_banner.setVisible(False)
            return
        self.input.setPlainText(text)
        self.edit_banner.setVisible(True)
        self.input.setFocus()
