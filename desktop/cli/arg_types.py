"""Argument types for the ``bastion`` command line.

Every number is checked while the arguments are parsed, so a bad value is refused at once, before
a database, a model or a machine-learning library loads. Limits that are settings (answer length,
temperature, …) come from the ``Settings`` record, so the CLI and the window agree.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from typing import Any

ADAPTER_SCALE_LIMIT = 4.0  # as bastion.models.adapter_catalog.SCALE_LIMIT (a test checks)


def positive_int(text: str) -> int:
    """A whole number above 0 (ids, counts, sizes)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text} must be more than 0")
    return value


def positive_float(text: str) -> float:
    """A finite number above 0."""
    value = _finite(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text} must be more than 0")
    return value


def float_in(low: float, high: float) -> Callable[[str], float]:
    """A finite number from ``low`` to ``high``, inclusive."""
    def parse(text: str) -> float:
        value = _finite(text)
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{text} is out of range: give a number from "
                                             f"{low:g} to {high:g}")
        return value

    parse.__name__ = "number"  # argparse names the type in its own messages
    return parse


def setting(key: str) -> Callable[[str], Any]:
    """A value of setting ``key``, checked against its type and range in ``Settings``."""
    def parse(text: str) -> Any:
        from bastion.desktop.configuration import SettingError, parse_setting

        try:
            return parse_setting(key, text)
        except SettingError as error:
            raise argparse.ArgumentTypeError(str(error)) from None

    parse.__name__ = key
    return parse


def adapter_spec(text: str) -> tuple[str, float]:
    """``NAME`` or ``NAME:SCALE`` (SCALE in [-4, 4], 1 when omitted) → (name, scale)."""
    name, colon, scale_text = text.strip().rpartition(":")
    if not colon:
        name, scale_text = scale_text, ""
    name = name.strip()
    if not name:
        raise argparse.ArgumentTypeError(
            f"{text!r} names no adapter. Write NAME or NAME:SCALE, e.g. facts:0.5 "
            "(`bastion adapters list` shows the names)")
    if not colon:
        return name, 1.0
    try:
        scale = float(scale_text)
    except ValueError:
        scale = math.nan
    if not math.isfinite(scale) or abs(scale) > ADAPTER_SCALE_LIMIT:
        raise argparse.ArgumentTypeError(
            f"the scale in {text!r} must be a number from -{ADAPTER_SCALE_LIMIT:g} to "
            f"{ADAPTER_SCALE_LIMIT:g}: 1 applies the adapter as trained, 0 turns it off")
    return name, scale


def _finite(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value
