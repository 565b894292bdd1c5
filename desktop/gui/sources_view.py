"""The sources under an answer: the passages it cites, then the others it was shown (folded);
file, page and snippet. Clicking one previews its passage beside the chat (``passage_preview``),
from where the file opens at its page (``open_document``).
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QMouseEvent
from PySide6.QtWidgets import QFrame, QLabel, QToolButton, QVBoxLayout, QWidget

if TYPE_CHECKING:
    from bastion.store.chats import Source

_MARKUP = re.compile(r"(?:^|(?<=\s))#{1,6}\s+|\*\*|__|`")


def readable_snippet(text: str) -> str:
    """The snippet without Markdown heading and emphasis marks (display only)."""
    return " ".join(_MARKUP.sub(" ", text).split())


def describe(source: Source) -> str:
    """``name · page N`` for a source."""
    where = Path(source.path).name
    return f"{where} · page {source.page}" if source.page is not None else where


class SourceRow(QFrame):
    """One source: number, file, page and snippet; a click activates it."""

    activated = Signal(object)

    def __init__(self, source: Source, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.source = source
        self.setObjectName("sourceRow")
        self.setCursor(Qt.CursorShape.PointingHandCursor)
        self.setToolTip(f"Show the passage from {source.path}")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 4, 8, 4)
        layout.setSpacing(1)
        title = QLabel(f"<b>[{source.n}]</b> <a href='#'>{html.escape(describe(source))}</a>")
        title.setTextFormat(Qt.TextFormat.RichText)
        title.setTextInteractionFlags(Qt.TextInteractionFlag.NoTextInteraction)
        title.setObjectName("sourceTitle")
        snippet = QLabel(html.escape(readable_snippet(source.snippet)))
        snippet.setWordWrap(True)
        snippet.setTextFormat(Qt.TextFormat.RichText)
        snippet.setObjectName("sourceSnippet")
        snippet.setTextInteractionFlags(Qt.TextInteractionFlag.NoTextInteraction)
        layout.addWidget(title)
        layout.addWidget(snippet)
        self.title_label = title
        self.snippet_label = snippet

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:
        if event.button() == Qt.MouseButton.LeftButton:
            self.activated.emit(self.source)
        super().mouseReleaseEvent(event)


class SourcesView(QWidget):
    """The sources of one answer: the passages it cites, then the others it was shown, folded
    under "Also retrieved" (collapsed until clicked).

    While the answer streams nothing is cited yet, so every passage found waits under the fold;
    when nothing is cited at the end, the header says so.
    """

    source_activated = Signal(object)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._layout = QVBoxLayout(self)
        self._layout.setContentsMargins(0, 4, 0, 0)
        self._layout.setSpacing(2)
        self.header = QLabel()
        self.header.setObjectName("sourcesHeader")
        self._layout.addWidget(self.header)
        self.cited_box = QWidget(self)
        self._cited_layout = QVBoxLayout(self.cited_box)
        self._cited_layout.setContentsMargins(0, 0, 0, 0)
        self._cited_layout.setSpacing(2)
        self._layout.addWidget(self.cited_box)
        self.also_button = QToolButton(self)
        self.also_button.setObjectName("alsoRetrievedButton")
        self.also_button.setCheckable(True)
        self.also_button.setAutoRaise(True)
        self.also_button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.also_button.setArrowType(Qt.ArrowType.RightArrow)
        self.also_button.toggled.connect(self._fold)
        self._layout.addWidget(self.also_button)
        self.also_box = QWidget(self)
        self.also_box.setObjectName("alsoRetrieved")
        self._also_layout = QVBoxLayout(self.also_box)
        self._also_layout.setContentsMargins(16, 0, 0, 0)  # indented under its button
        self._also_layout.setSpacing(2)
        self.also_box.setVisible(False)
        self._layout.addWidget(self.also_box)
        self.rows: list[SourceRow] = []  # cited first, then also retrieved
        self.cited_rows: list[SourceRow] = []
        self.also_rows: list[SourceRow] = []
        self._shown: tuple[list[Source], bool] = ([], True)
        self.setVisible(False)

    def set_sources(self, sources: Sequence[Source], answered: bool = True) -> None:
        """Show ``sources``; ``answered`` is False while the answer still streams."""
        if (list(sources), answered) == self._shown:
            return
        self._shown = (list(sources), answered)
        for row in self.rows:
            row.setParent(None)
            row.deleteLater()
        from bastion.desktop.grounding import cited_and_retrieved  # the store: after the show

        cited, also = cited_and_retrieved(sources)
        self.cited_rows = [self._row(s, self._cited_layout) for s in cited]
        self.also_rows = [self._row(s, self._also_layout) for s in also]
        self.rows = self.cited_rows + self.also_rows
        if not answered:
            found = len(sources)
            self.header.setText(f"Sources — {found} passage{'s' if found != 1 else ''} found")
        else:
            self.header.setText("Sources" if cited else "Sources — no passage cited")
        self.cited_box.setVisible(bool(cited))
        self.also_button.setText(f"Also retrieved ({len(also)})")
        self.also_button.setVisible(bool(also))
        self.also_box.setVisible(bool(also) and self.also_button.isChecked())
        self.setVisible(bool(sources))

    def _row(self, source: Source, layout: QVBoxLayout) -> SourceRow:
        row = SourceRow(source, self)
        row.activated.connect(self.source_activated)
        layout.addWidget(row)
        return row

    def _fold(self, open_: bool) -> None:
        self.also_button.setArrowType(Qt.ArrowType.DownArrow if open_ else Qt.ArrowType.RightArrow)
        self.also_box.setVisible(open_ and bool(self.also_rows))
