"""The window's look: a readable base font, and colours that follow the system's light or dark
palette.

Every colour in the style sheet is derived from the application's ``QPalette`` (mixes of its
base, text and highlight colours), so one sheet reads well on a light and on a dark desktop. The
sheet is rebuilt whenever the palette changes, and a change of the system's colour scheme
(``QStyleHints.colorScheme``, Qt 6.5+) switches the palette when the platform does not do it
itself. ``BASTION_COLOR_SCHEME=light|dark`` overrides the system for people whose desktop
reports no scheme.
"""

from __future__ import annotations

import os
from typing import Literal

from PySide6.QtCore import QEvent, QObject, Qt
from PySide6.QtGui import QColor, QFont, QPalette
from PySide6.QtWidgets import QApplication

MIN_POINT_SIZE = 10
SCHEME_VARIABLE = "BASTION_COLOR_SCHEME"

Scheme = Literal["light", "dark"]
Tone = Literal["right", "wrong", "warning"]

Role = QPalette.ColorRole
Group = QPalette.ColorGroup


def is_dark(palette: QPalette) -> bool:
    """True when the palette's text is lighter than its background (a dark theme)."""
    return palette.color(Role.WindowText).lightness() > palette.color(Role.Window).lightness()


def mix(a: QColor, b: QColor, amount: float) -> str:
    """``a`` moved ``amount`` (0..1) of the way to ``b``, as ``#rrggbb``."""
    def channel(x: int, y: int) -> int:
        return round(x + (y - x) * amount)

    return QColor(channel(a.red(), b.red()), channel(a.green(), b.green()),
                  channel(a.blue(), b.blue())).name()


# Colours that carry meaning (a right or wrong lab answer, a warning) keep their hue on both
# themes; only their lightness changes, so they stay readable on either background.
_TONES: dict[Tone, tuple[str, str]] = {  # (on light, on dark)
    "right": ("#2a7d2a", "#7fd17f"),
    "wrong": ("#b22222", "#ff8a80"),
    "warning": ("#7a5d00", "#f0c95a"),
}
_WARNING_BACKGROUND = ("#fff4ce", "#3b3113")
_WARNING_BORDER = ("#e3c15a", "#7a6420")


def tone(kind: Tone, palette: QPalette) -> str:
    """The colour of ``kind`` for text on ``palette``'s background."""
    return _TONES[kind][is_dark(palette)]


def style_sheet(palette: QPalette) -> str:
    """The window's style sheet for ``palette``: message cards, sources, notices, placeholders."""
    base = palette.color(Role.Base)
    window = palette.color(Role.Window)
    text = palette.color(Role.Text)
    highlight = palette.color(Role.Highlight)
    dark = is_dark(palette)
    return f"""
QFrame#userMessage {{ background: {mix(base, highlight, 0.10)};
    border: 1px solid {mix(base, highlight, 0.30)}; border-radius: 8px; }}
QFrame#assistantMessage {{ background: {base.name()};
    border: 1px solid {mix(base, text, 0.14)}; border-radius: 8px; }}
QLabel#messageAuthor {{ font-weight: bold; color: {mix(highlight, text, 0.35)}; }}
QLabel#messageStats {{ color: {mix(text, base, 0.45)}; }}
QLabel#messageNote {{ color: {tone("warning", palette)}; font-style: italic; }}
QLabel#sourcesHeader {{ color: {mix(text, base, 0.25)}; font-weight: bold; margin-top: 4px; }}
QFrame#sourceRow {{ background: {mix(base, text, 0.04)};
    border: 1px solid {mix(base, text, 0.12)}; border-radius: 6px; }}
QFrame#sourceRow:hover {{ background: {mix(base, highlight, 0.12)};
    border-color: {mix(base, highlight, 0.45)}; }}
QLabel#sourceSnippet {{ color: {mix(text, base, 0.25)}; }}
QLabel#chatTitle {{ font-size: 13pt; font-weight: bold; }}
QLabel#placeholder {{ color: {mix(text, base, 0.5)}; font-size: 12pt; padding: 40px; }}
QWidget#messageColumn {{ background: {mix(base, window, 0.5)}; }}
QTextBrowser#messageBody {{ background: transparent; }}
QFrame#modelNotice {{ background: {_WARNING_BACKGROUND[dark]};
    border: 1px solid {_WARNING_BORDER[dark]}; border-radius: 6px; }}
QFrame#modelNotice QLabel {{ color: {mix(QColor(tone("warning", palette)), text, 0.35)}; }}
"""


def dark_palette() -> QPalette:
    """A dark Fusion palette, for when the system asks for dark but the platform gives none."""
    palette = QPalette()
    colours = {
        Role.Window: "#2b2b2b", Role.WindowText: "#e6e6e6", Role.Base: "#1f1f1f",
        Role.AlternateBase: "#272727", Role.ToolTipBase: "#3a3a3a", Role.ToolTipText: "#e6e6e6",
        Role.PlaceholderText: "#8a8a8a", Role.Text: "#e6e6e6", Role.Button: "#363636",
        Role.ButtonText: "#e6e6e6", Role.BrightText: "#ff7b72", Role.Light: "#4a4a4a",
        Role.Midlight: "#3e3e3e", Role.Mid: "#2f2f2f", Role.Dark: "#1a1a1a",
        Role.Shadow: "#000000", Role.Highlight: "#3d7bd9", Role.HighlightedText: "#ffffff",
        Role.Link: "#8ab4f8", Role.LinkVisited: "#c58af9",
    }
    for role, colour in colours.items():
        palette.setColor(role, QColor(colour))
    for role in (Role.WindowText, Role.Text, Role.ButtonText):
        palette.setColor(Group.Disabled, role, QColor("#7a7a7a"))
    palette.setColor(Group.Disabled, Role.Base, QColor("#2b2b2b"))
    palette.setColor(Group.Disabled, Role.Highlight, QColor("#4a4a4a"))
    return palette


def wanted_scheme(app: QApplication, system: Qt.ColorScheme | None = None) -> Scheme | None:
    """The scheme to show: the override variable, else the system's (``system``, or as the
    style hints say now), else None (unknown: keep the palette the platform gave)."""
    override = os.environ.get(SCHEME_VARIABLE, "").strip().lower()
    if override in ("light", "dark"):
        return "dark" if override == "dark" else "light"
    scheme = app.styleHints().colorScheme() if system is None else system
    if scheme == Qt.ColorScheme.Dark:
        return "dark"
    if scheme == Qt.ColorScheme.Light:
        return "light"
    return None


class ThemeFollower(QObject):
    """Keeps the style sheet in step with the palette, and the palette with the colour scheme."""

    def __init__(self, app: QApplication) -> None:
        super().__init__(app)
        self.app = app
        self.sheet = ""
        app.installEventFilter(self)
        app.styleHints().colorSchemeChanged.connect(self.follow_scheme)

    def follow_scheme(self, system: Qt.ColorScheme | None = None) -> None:
        """Match the palette to the wanted scheme when the platform has not done it."""
        wanted = wanted_scheme(self.app, system)
        if wanted is not None and (wanted == "dark") != is_dark(self.app.palette()):
            self.app.setPalette(dark_palette() if wanted == "dark"
                                else self.app.style().standardPalette())
        self.refresh()

    def refresh(self) -> None:
        """Rebuild the sheet from the current palette (only when it changes: setting a sheet
        re-polishes every widget)."""
        sheet = style_sheet(self.app.palette())
        if sheet != self.sheet:
            self.sheet = sheet
            self.app.setStyleSheet(sheet)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if watched is self.app and event.type() == QEvent.Type.ApplicationPaletteChange:
            self.refresh()
        return False

    def detach(self) -> None:
        """Stop following (tests restore the shared application afterwards)."""
        self.app.removeEventFilter(self)
        self.app.styleHints().colorSchemeChanged.disconnect(self.follow_scheme)
        self.setParent(None)


def apply_style(app: QApplication) -> ThemeFollower:
    """Fusion style (the same on every platform), a font no smaller than 10 pt, and a sheet
    that follows the palette from now on."""
    app.setStyle("Fusion")
    font = QFont(app.font())
    if font.pointSizeF() < MIN_POINT_SIZE:
        font.setPointSizeF(MIN_POINT_SIZE)
    app.setFont(font)
    follower = app.findChild(ThemeFollower)
    if follower is None:
        follower = ThemeFollower(app)
    follower.follow_scheme()
    return follower
