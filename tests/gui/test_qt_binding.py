"""The Qt binding itself must not corrupt the interpreter.

PySide6 6.12.0 on Python 3.11 returns ``None`` from void methods without taking a reference, so
every ``label.setText(...)`` steals one; after some thousands of calls (a few minutes of
streaming) Python aborts with "deallocating None". pyproject.toml keeps that version out; this
test catches it (or a relapse) in a second instead of as a crash at exit. On Python ≥ 3.12
``None`` is immortal and the counts do not move either way.
"""

from __future__ import annotations

import sys

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QLabel, QPushButton


def test_void_and_bool_methods_keep_reference_counts(qtbot) -> None:
    label, button, timer = QLabel(), QPushButton(), QTimer()
    qtbot.addWidget(label)
    qtbot.addWidget(button)
    calls = 2000
    before = sys.getrefcount(None), sys.getrefcount(True), sys.getrefcount(False)
    for i in range(calls):
        label.setText(str(i))
        button.setEnabled(i % 2 == 0)
        timer.setInterval(5)
        label.isVisible()
        button.isEnabled()
    after = sys.getrefcount(None), sys.getrefcount(True), sys.getrefcount(False)
    drift = [a - b for a, b in zip(after, before, strict=True)]
    assert all(d > -calls // 10 for d in drift), f"references lost (None, True, False): {drift}"
