"""The window follows the system's light or dark palette: every colour of the style sheet comes
from the palette, readable on both, and a scheme change switches them."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import QApplication

from bastion.desktop.gui.chat_list_model import MessageItem
from bastion.desktop.gui.main_window import MainWindow
from bastion.desktop.gui.message_view import MessageWidget
from bastion.desktop.gui.style import (
    SCHEME_VARIABLE,
    ThemeFollower,
    apply_style,
    dark_palette,
    is_dark,
    style_sheet,
)

pytestmark = pytest.mark.qt_log_ignore("propagateSizeHints")

Role = QPalette.ColorRole


@pytest.fixture
def follower(qapp: QApplication) -> Iterator[ThemeFollower]:
    """The window's style applied to the shared application, undone afterwards."""
    before = QPalette(qapp.palette())
    follower = apply_style(qapp)
    yield follower
    follower.detach()
    qapp.setStyleSheet("")
    qapp.setPalette(before)


def luminance(colour: QColor) -> float:
    def linear(c: float) -> float:
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4

    return (0.2126 * linear(colour.redF()) + 0.7152 * linear(colour.greenF())
            + 0.0722 * linear(colour.blueF()))


def contrast(a: QColor, b: QColor) -> float:
    """WCAG contrast ratio (1..21)."""
    la, lb = sorted((luminance(a), luminance(b)), reverse=True)
    return (la + 0.05) / (lb + 0.05)


def declared(sheet: str, prop: str) -> list[QColor]:
    return [QColor(value) for value in re.findall(rf"(?<![-\w]){prop}: (#[0-9a-f]{{6}})", sheet)]


@pytest.mark.parametrize("dark", [False, True], ids=["light", "dark"])
def test_sheet_colours_come_from_the_palette_and_stay_readable(qapp: QApplication,
                                                                dark: bool) -> None:
    palette = dark_palette() if dark else qapp.style().standardPalette()
    assert is_dark(palette) is dark
    sheet = style_sheet(palette)
    backgrounds = declared(sheet, "background")
    texts = declared(sheet, "color")
    assert backgrounds and texts
    # No light card on a dark window (or the reverse): every background sits on the theme's side.
    for colour in backgrounds:
        assert (colour.lightness() < 100) if dark else (colour.lightness() > 200), colour.name()
    # Every text colour reads on every background of the sheet (WCAG AA for large text: 3:1).
    for text in texts:
        for background in backgrounds:
            assert contrast(text, background) >= 3.0, (text.name(), background.name())


def test_a_dark_palette_set_on_the_app_darkens_the_window(qtbot, window: MainWindow,
                                                          follower: ThemeFollower,
                                                          qapp: QApplication) -> None:
    card = MessageWidget(MessageItem("assistant", "The answer is **42**."))
    qtbot.addWidget(card)
    card.resize(400, 120)
    card.show()
    light_card = card.grab().toImage().pixelColor(20, 60)
    light_list = window.chat_view.message_list.grab().toImage().pixelColor(5, 5)
    assert light_card.lightness() > 200 and light_list.lightness() > 200

    qapp.setPalette(dark_palette())  # as a dark desktop theme does
    qtbot.waitUntil(lambda: card.grab().toImage().pixelColor(20, 60).lightness() < 80)
    assert window.chat_view.message_list.grab().toImage().pixelColor(5, 5).lightness() < 80
    assert follower.sheet == qapp.styleSheet() == style_sheet(qapp.palette())


def test_a_scheme_change_switches_the_palette(follower: ThemeFollower, qapp: QApplication,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(SCHEME_VARIABLE, raising=False)
    assert not is_dark(qapp.palette())
    # The signal Qt emits when the desktop switches to dark (this platform reports none itself).
    qapp.styleHints().colorSchemeChanged.emit(Qt.ColorScheme.Dark)
    assert is_dark(qapp.palette()) and "#1f1f1f" in qapp.styleSheet()
    qapp.styleHints().colorSchemeChanged.emit(Qt.ColorScheme.Light)
    assert not is_dark(qapp.palette())


def test_the_override_variable_wins(qapp: QApplication, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SCHEME_VARIABLE, "dark")
    before = QPalette(qapp.palette())
    follower = apply_style(qapp)
    try:
        assert is_dark(qapp.palette())
        qapp.styleHints().colorSchemeChanged.emit(Qt.ColorScheme.Light)
        assert is_dark(qapp.palette())  # the user asked for dark
    finally:
        follower.detach()
        qapp.setStyleSheet("")
        qapp.setPalette(before)
