"""The scrolling column of message cards, kept in step with a ``MessageListModel``.

Rows inserted add cards, rows removed drop them, ``dataChanged`` updates one card; only a model
reset (switching chats) rebuilds the column. The view follows a streaming answer while the user
is at the bottom and stays put when they scrolled up to read.
"""

from __future__ import annotations

from PySide6.QtCore import QModelIndex, QPersistentModelIndex, Qt, QTimer, QUrl, Signal
from PySide6.QtWidgets import QFrame, QLabel, QScrollArea, QVBoxLayout, QWidget

from bastion.desktop.gui.chat_list_model import ROLE_ITEM, MessageListModel
from bastion.desktop.gui.message_view import MessageWidget

Index = QModelIndex | QPersistentModelIndex


class MessageListView(QScrollArea):
    """Message cards for the rows of ``model``; card signals are re-emitted with the row."""

    copy_requested = Signal(int)
    regenerate_requested = Signal(int)
    edit_requested = Signal(int)
    link_clicked = Signal(QUrl)
    source_activated = Signal(object)
    good_toggled = Signal(int, bool)

    def __init__(self, model: MessageListModel, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.model = model
        self.setWidgetResizable(True)
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        container = QWidget()
        container.setObjectName("messageColumn")
        self._layout = QVBoxLayout(container)
        self._layout.setContentsMargins(16, 12, 16, 12)
        self._layout.setSpacing(10)
        self.placeholder = QLabel("Ask a question to start.")
        self.placeholder.setObjectName("placeholder")
        self.placeholder.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.placeholder.setWordWrap(True)
        self._layout.addWidget(self.placeholder)
        self._layout.addStretch(1)
        self.setWidget(container)
        self.widgets: list[MessageWidget] = []
        self._follow = True
        self.verticalScrollBar().valueChanged.connect(self._scrolled)
        self.verticalScrollBar().rangeChanged.connect(self._range_changed)
        model.rowsInserted.connect(self._inserted)
        model.rowsRemoved.connect(self._removed)
        model.dataChanged.connect(self._changed)
        model.modelReset.connect(self._reset)
        self._actions_enabled = True
        self._reset()

    # -- model signals ---------------------------------------------------------------------

    def _reset(self) -> None:
        for widget in self.widgets:
            widget.setParent(None)
            widget.deleteLater()
        self.widgets = []
        for row in range(self.model.rowCount()):
            self._add(row)
        self._follow = True
        self._update_placeholder()
        QTimer.singleShot(0, self, self.scroll_to_bottom)  # not after the view is deleted

    def _inserted(self, parent: Index, first: int, last: int) -> None:
        for row in range(first, last + 1):
            self._add(row)
        self._update_placeholder()

    def _removed(self, parent: Index, first: int, last: int) -> None:
        for widget in self.widgets[first:last + 1]:
            widget.setParent(None)
            widget.deleteLater()
        del self.widgets[first:last + 1]
        self._update_placeholder()

    def _changed(self, top_left: Index, bottom_right: Index, roles: object = None) -> None:
        for row in range(top_left.row(), bottom_right.row() + 1):
            self.widgets[row].set_item(self.model.data(self.model.index(row), ROLE_ITEM))

    # -- cards -----------------------------------------------------------------------------

    def _add(self, row: int) -> None:
        widget = MessageWidget(self.model.data(self.model.index(row), ROLE_ITEM))
        widget.copy_requested.connect(lambda w: self._emit_row(self.copy_requested, w))
        widget.regenerate_requested.connect(lambda w: self._emit_row(self.regenerate_requested, w))
        widget.edit_requested.connect(lambda w: self._emit_row(self.edit_requested, w))
        widget.link_clicked.connect(self.link_clicked)
        widget.source_activated.connect(self.source_activated)
        widget.good_toggled.connect(self._emit_good)
        widget.set_actions_enabled(self._actions_enabled)
        # The stretch stays last, after the placeholder (index 0) and the cards.
        self._layout.insertWidget(1 + row, widget)
        self.widgets.insert(row, widget)

    def _emit_row(self, signal: object, widget: MessageWidget) -> None:
        if widget in self.widgets:
            signal.emit(self.widgets.index(widget))  # type: ignore[attr-defined]

    def _emit_good(self, widget: MessageWidget, good: bool) -> None:
        if widget in self.widgets:
            self.good_toggled.emit(self.widgets.index(widget), good)

    def set_actions_enabled(self, enabled: bool) -> None:
        self._actions_enabled = enabled
        for widget in self.widgets:
            widget.set_actions_enabled(enabled)

    def set_placeholder(self, text: str) -> None:
        self.placeholder.setText(text)

    def _update_placeholder(self) -> None:
        self.placeholder.setVisible(not self.widgets)

    # -- following the stream --------------------------------------------------------------

    def _scrolled(self, value: int) -> None:
        bar = self.verticalScrollBar()
        self._follow = value >= bar.maximum() - 24

    def _range_changed(self, minimum: int, maximum: int) -> None:
        if self._follow:
            self.verticalScrollBar().setValue(maximum)

    def scroll_to_bottom(self) -> None:
        self._follow = True
        bar = self.verticalScrollBar()
        bar.setValue(bar.maximum())
