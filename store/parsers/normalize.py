"""Text normalisation shared by every parser: one form of Unicode, newlines and spacing.

Zero-width and BiDi control characters are removed because they can hide or reorder text a
person reads differently from what the index (and the model) sees ("Trojan Source").
"""

from __future__ import annotations

import re
import unicodedata

_INVISIBLE = re.compile("[\u200b-\u200f\u202a-\u202e\u2066-\u2069\ufeff]")
_TRAILING_SPACE = re.compile(r"[ \t\f\v]+(?=\n)")
_BLANK_RUNS = re.compile(r"\n{3,}")


def normalize_text(text: str) -> tuple[str, int]:
    """Normalise text for indexing.

    NFC; NUL dropped; newlines as ``\\n`` (also U+2028/U+2029); zero-width and BiDi controls
    removed; trailing spaces dropped; runs of blank lines collapsed to one blank line so
    paragraph breaks survive as exactly ``\\n\\n``.

    Returns:
        The normalised text and how many invisible formatting characters were removed.
    """
    if "\x00" in text:
        text = text.replace("\x00", "")
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    if "\u2028" in text or "\u2029" in text:
        text = text.replace("\u2028", "\n").replace("\u2029", "\n\n")
    text, removed = _INVISIBLE.subn("", text)
    if not text.isascii() and not unicodedata.is_normalized("NFC", text):
        text = unicodedata.normalize("NFC", text)
    text = _TRAILING_SPACE.sub("", text)
    text = _BLANK_RUNS.sub("\n\n", text)
    return text.strip("\n"), removed
