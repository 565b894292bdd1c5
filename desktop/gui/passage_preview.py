"""The preview pane beside the chat: a cited passage in full, highlighted in the text around it,
with "Open file" and "Open at page N".

The text is a document's: it is shown escaped, as plain text, in a browser that follows no link
and loads no resource. Loading happens on the core thread (``core_tasks.source_preview``); the
pane only shows what arrives.
"""

from __future__ import annotations

import html
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import Qt, QTimer, QUrl, Signal
from PySide6.QtGui import QTextCharFormat
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QTextBrowser,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from bastion.desktop.gui.sources_view import describe

if TYPE_CHECKING:
    from bastion.desktop.source_preview import SourcePreview
    from bastion.store.chats import Source

HIGHLIGHT = "#fff0a0"
_ANCHOR = "passage"


class PreviewBrowser(QTextBrowser):
    """Read-only rich text that follows no link and loads no resource."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setOpenLinks(False)
        self.setOpenExternalLinks(False)

    def loadResource(self, kind: int, name: QUrl | str) -> Any:
        return None

    def setSource(self, name: QUrl | str, kind: Any = None) -> None:
        return


def preview_html(preview: SourcePreview) -> str:
    """The text with the passage highlighted; everything escaped, line breaks kept."""
    def text(part: str) -> str:
        return html.escape(part)

    return (f"<div style='white-space: pre-wrap'>{text(preview.before)}<a name='{_ANCHOR}'></a>"
            f"<span style='background-color: {HIGHLIGHT}; color: #000'>{text(preview.passage)}"
            f"</span>{text(preview.after)}</div>")


class PassagePreview(QFrame):
    """Shows one source at a time; asks the chat view to open its file.

    Signals:
        open_requested(object, bool): the ``SourcePreview`` and whether at its page.
        closed: the user closed the pane.
    """

    open_requested = Signal(object, bool)
    closed = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("passagePreview")
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.setMinimumWidth(260)
        self.source: Source | None = None
        self.preview: SourcePreview | None = None
        layout = QVBoxLayout(self)
        layout.setContentsMargins(10, 8, 10, 8)
        layout.setSpacing(6)

        top = QHBoxLayout()
        self.title = QLabel()
        self.title.setObjectName("previewTitle")
        self.title.setWordWrap(True)
        self.title.setTextFormat(Qt.TextFormat.PlainText)
        top.addWidget(self.title, 1)
        self.close_button = QToolButton(self)
        self.close_button.setObjectName("previewClose")
        self.close_button.setText("✕")
        self.close_button.setToolTip("Close the preview")
        self.close_button.setAutoRaise(True)
        self.close_button.clicked.connect(self.close_preview)
        top.addWidget(self.close_button)
        layout.addLayout(top)

        self.where = QLabel()
        self.where.setObjectName("previewWhere")
        self.where.setWordWrap(True)
        self.where.setTextFormat(Qt.TextFormat.PlainText)
        self.where.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout.addWidget(self.where)

        self.problem = QLabel()
        self.problem.setObjectName("previewProblem")
        self.problem.setWordWrap(True)
        self.problem.setTextFormat(Qt.TextFormat.PlainText)
        self.problem.setVisible(False)
        layout.addWidget(self.problem)

        self.text = PreviewBrowser(self)
        self.text.setObjectName("previewText")
        layout.addWidget(self.text, 1)

        self.status = QLabel()
        self.status.setObjectName("previewStatus")
        self.status.setWordWrap(True)
        self.status.setTextFormat(Qt.TextFormat.PlainText)
        self.status.setVisible(False)
        layout.addWidget(self.status)

        buttons = QHBoxLayout()
        self.open_button = QPushButton("Open file")
        self.open_button.setObjectName("openFileButton")
        self.open_button.clicked.connect(lambda: self._request(False))
        self.page_button = QPushButton("Open at page")
        self.page_button.setObjectName("openAtPageButton")
        self.page_button.clicked.connect(lambda: self._request(True))
        buttons.addWidget(self.open_button)
        buttons.addWidget(self.page_button)
        buttons.addStretch(1)
        layout.addLayout(buttons)
        self._set_buttons(None)
        self.setVisible(False)

    # -- what is shown ---------------------------------------------------------------------

    def show_loading(self, source: Source, waiting: bool = False) -> None:
        """``source`` was clicked; its passage is on its way (``waiting``: behind an answer)."""
        self.source, self.preview = source, None
        self.title.setText(f"[{source.n}] {describe(source)}")
        self.where.setText(source.path)
        self._set_problem("")
        self._set_status("")
        self.text.setPlainText("Loading the passage… (after the answer being written)"
                               if waiting else "Loading the passage…")
        self._set_buttons(None)
        self.setVisible(True)

    def show_preview(self, preview: SourcePreview) -> None:
        self.source, self.preview = preview.source, preview
        self.title.setText(f"[{preview.source.n}] {describe(preview.source)}")
        where = preview.source.path
        self.where.setText(f"{preview.collection} · {where}" if preview.collection else where)
        self._set_problem(preview.problem)
        self._set_status("")
        self.text.setHtml(preview_html(preview))
        self._set_buttons(preview)
        self.setVisible(True)
        QTimer.singleShot(0, lambda: self.text.scrollToAnchor(_ANCHOR))

    def show_failed(self, source: Source, message: str) -> None:
        """The passage could not be read (the library itself failed): say so and why."""
        self.source, self.preview = source, None
        self.text.setPlainText(source.snippet)
        self._set_problem(message)
        self._set_buttons(None)
        self.setVisible(True)

    def set_status(self, text: str) -> None:
        """What happened when a file was opened (shown under the text)."""
        self._set_status(text)

    def highlighted_text(self) -> str:
        """The text shown highlighted (the cited passage), as a reader sees it."""
        lines: list[str] = []
        block = self.text.document().begin()
        while block.isValid():
            texts: list[str] = []
            it = block.begin()
            while not it.atEnd():
                fragment = it.fragment()
                if fragment.isValid() and _highlighted(fragment.charFormat()):
                    texts.append(fragment.text())
                it += 1
            if texts:
                lines.append("".join(texts))
            block = block.next()
        return "\n".join(lines).replace("\u2028", "\n")

    def close_preview(self) -> None:
        self.setVisible(False)
        self.source = self.preview = None
        self.closed.emit()

    # -- internals -------------------------------------------------------------------------

    def _set_buttons(self, preview: SourcePreview | None) -> None:
        can_open = preview is not None and preview.can_open
        self.open_button.setEnabled(can_open)
        at_page = preview is not None and preview.opens_at_page
        self.page_button.setVisible(at_page)
        if preview is not None and preview.page is not None:
            self.page_button.setText(f"Open at page {preview.page}")

    def _set_problem(self, text: str) -> None:
        self.problem.setText(text)
        self.problem.setVisible(bool(text))

    def _set_status(self, text: str) -> None:
        self.status.setText(text)
        self.status.setVisible(bool(text))

    def _request(self, at_page: bool) -> None:
        if self.preview is not None and self.preview.can_open:
            self.open_requested.emit(self.preview, at_page)


def _highlighted(char_format: QTextCharFormat) -> bool:
    return bool(char_format.background().style() != Qt.BrushStyle.NoBrush)
