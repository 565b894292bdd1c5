"""The sources under an answer: file, page and snippet; clicking one opens the file.

Files open with the desktop's default application (``QDesktopServices``). A page cannot be
passed portably: a ``#page=N`` fragment on a file URL is dropped or breaks the lookup with
xdg-open and the Windows shell, so the page is shown in the list and the file opens at its start.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Sequence
from pathlib import Path

from PySide6.QtCore import Qt, QUrl, Signal
from PySide6.QtGui import QDesktopServices, QMouseEvent
from PySide6.QtWidgets import QFrame, QLabel, QVBoxLayout, QWidget

from bastion.desktop.errors import BastionError
from bastion.store.chats import Source

Opener = Callable[[QUrl], bool]


def source_url(source: Source) -> QUrl:
    """The URL a source opens (the file itself; see the module docstring about pages)."""
    return QUrl.fromLocalFile(str(Path(source.path)))


def open_source(source: Source, opener: Opener = QDesktopServices.openUrl) -> QUrl:
    """Open the file of ``source`` with the desktop's default application.

    Raises:
        BastionError: the file is gone or no application could open it.
    """
    path = Path(source.path)
    if not path.is_file():
        raise BastionError(f"{path} is no longer there: it was moved or deleted. Sync the "
                           "collection on the Library page to bring the index up to date.")
    url = source_url(source)
    if not opener(url):
        raise BastionError(f"No application could open {path.name}. Open it from your file "
                           f"manager: {path}")
    return url


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
        self.setToolTip(f"Open {source.path}")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 4, 8, 4)
        layout.setSpacing(1)
        cited = "" if source.cited else ' <span style="color:#888">(not cited)</span>'
        title = QLabel(f"<b>[{source.n}]</b> <a href='#'>{html.escape(describe(source))}</a>{cited}")
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
    """The list of sources of one answer, cited ones first."""

    source_activated = Signal(object)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._layout = QVBoxLayout(self)
        self._layout.setContentsMargins(0, 4, 0, 0)
        self._layout.setSpacing(2)
        self.header = QLabel()
        self.header.setObjectName("sourcesHeader")
        self._layout.addWidget(self.header)
        self.rows: list[SourceRow] = []
        self._shown: list[Source] = []
        self.setVisible(False)

    def set_sources(self, sources: Sequence[Source]) -> None:
        ordered = sorted(sources, key=lambda s: (not s.cited, s.n))
        if ordered == self._shown:
            return
        self._shown = ordered
        for row in self.rows:
            row.setParent(None)
            row.deleteLater()
        self.rows = []
        for source in ordered:
            row = SourceRow(source, self)
            row.activated.connect(self.source_activated)
            self._layout.addWidget(row)
            self.rows.append(row)
        cited = sum(1 for s in ordered if s.cited)
        found = f"{len(ordered)} passage{'s' if len(ordered) != 1 else ''} found"
        self.header.setText(f"Sources — {cited} cited, {found}" if cited else f"Sources — {found}")
        self.setVisible(bool(ordered))
