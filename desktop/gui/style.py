"""The window's look: a readable base font and a light style sheet for the message cards."""

from __future__ import annotations

from PySide6.QtGui import QFont
from PySide6.QtWidgets import QApplication

MIN_POINT_SIZE = 10

STYLE_SHEET = """
QFrame#userMessage { background: #eef3fb; border: 1px solid #d5e0f0; border-radius: 8px; }
QFrame#assistantMessage { background: #ffffff; border: 1px solid #e1e1e1; border-radius: 8px; }
QLabel#messageAuthor { font-weight: bold; color: #2b4c7e; }
QLabel#messageStats { color: #666666; }
QLabel#messageNote { color: #8a6d00; font-style: italic; }
QLabel#sourcesHeader { color: #444444; font-weight: bold; margin-top: 4px; }
QFrame#sourceRow { background: #f6f8fa; border: 1px solid #e5e8ec; border-radius: 6px; }
QFrame#sourceRow:hover { background: #eaf1fb; border-color: #b9cbe6; }
QLabel#sourceSnippet { color: #444444; }
QLabel#chatTitle { font-size: 13pt; font-weight: bold; }
QLabel#placeholder { color: #777777; font-size: 12pt; padding: 40px; }
QWidget#messageColumn { background: #fafafa; }
QTextBrowser#messageBody { background: transparent; }
"""


def apply_style(app: QApplication) -> None:
    """Fusion style (the same on every platform), a font no smaller than 10 pt, the sheet."""
    app.setStyle("Fusion")
    font = QFont(app.font())
    if font.pointSizeF() < MIN_POINT_SIZE:
        font.setPointSizeF(MIN_POINT_SIZE)
    app.setFont(font)
    app.setStyleSheet(STYLE_SHEET)
