"""The bar above the chat that says what is wrong with the loaded model (e.g. its chat template
was refused and a default is used, or a safer engine setting is in force), until dismissed.

A status-bar tooltip is easy to miss; a refused template changes every answer, so the chat says
it where the answers appear. Dismissing hides these notes for this model; loading another model
(or the same one with new notes) shows its own.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QToolButton, QWidget

if TYPE_CHECKING:
    from bastion.models.engine_types import LoadInfo

from bastion.models.engine_types import LoadInfo


def model_notes(info: LoadInfo | None) -> list[str]:
    """What the user should know about the loaded model, in words (empty when all is well)."""
    if info is None:
        return []
    notes = []
    if info.template_warning:
        notes.append(info.template_warning)
    if info.fallback and info.fallback_is_new:  # told once, as the engine asks
        notes.append(info.fallback[:1].upper() + info.fallback[1:])
    return notes


class ModelNoticeBar(QFrame):
    """A dismissible warning bar; hidden when there is nothing to say."""

    dismissed = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("modelNotice")
        self.setFrameShape(QFrame.Shape.StyledPanel)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(10, 6, 6, 6)
        icon = QLabel("⚠")
        icon.setObjectName("modelNoticeIcon")
        icon.setAlignment(Qt.AlignmentFlag.AlignTop)
        layout.addWidget(icon)
        self.text = QLabel()
        self.text.setObjectName("modelNoticeText")
        self.text.setWordWrap(True)
        self.text.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout.addWidget(self.text, 1)
        self.close_button = QToolButton()
        self.close_button.setText("✕")
        self.close_button.setAutoRaise(True)
        self.close_button.setToolTip("Dismiss (it comes back if another model has a problem)")
        self.close_button.setAccessibleName("Dismiss model warning")
        self.close_button.clicked.connect(self.dismiss)
        layout.addWidget(self.close_button, 0, Qt.AlignmentFlag.AlignTop)
        self.notes: list[str] = []
        self._key: tuple[str, ...] = ()
        self._dismissed: tuple[str, ...] | None = None
        self.setVisible(False)

    def show_notes(self, notes: Sequence[str], model: str | None = None) -> None:
        """Show ``notes`` about ``model`` unless the user dismissed exactly these already."""
        self.notes = list(notes)
        key = (model or "", *self.notes)
        heading = f"<b>{_escape(model)}</b>: " if model else ""
        self.text.setText(heading + "<br>".join(_escape(note) for note in self.notes))
        self._key = key
        self.setVisible(bool(self.notes) and key != self._dismissed)

    def dismiss(self) -> None:
        self._dismissed = self._key
        self.setVisible(False)
        self.dismissed.emit()


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
