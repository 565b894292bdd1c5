"""The one place where exceptions become dialogs.

After Anki's ``qt/aqt/errors.py``: a known error (``user_message`` returns text) is shown as what
happened and what to do; anything else is a bug, shown as a short generic message naming the log
file, never as a raw traceback. Every error is logged, with its traceback, to the data folder's
``logs/``.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from PySide6.QtWidgets import QMessageBox, QWidget

from bastion.desktop.errors import user_message

log = logging.getLogger("bastion.gui")

LOG_FILE_NAME = "bastion-gui.log"


def setup_logging(logs_dir: Path) -> Path:
    """Log to ``logs_dir/bastion-gui.log`` (rotated, private to the user); returns its path."""
    logs_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(logs_dir, 0o700)
    path = logs_dir / LOG_FILE_NAME
    root = logging.getLogger()
    for handler in root.handlers:
        if isinstance(handler, logging.FileHandler) and Path(handler.baseFilename) == path:
            return path
    handler = logging.handlers.RotatingFileHandler(path, maxBytes=2_000_000, backupCount=3,
                                                   encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(threadName)s %(name)s: "
                                           "%(message)s"))
    root.addHandler(handler)
    if root.level > logging.INFO or root.level == logging.NOTSET:
        root.setLevel(logging.INFO)
    os.chmod(path, 0o600)
    return path


@dataclass(frozen=True)
class ErrorReport:
    """What the user was told."""

    title: str
    text: str
    known: bool


Presenter = Callable[[ErrorReport], None]


class ErrorReporter:
    """Turns exceptions into dialogs (one at a time per distinct message).

    Args:
        parent: the window dialogs belong to (None: top-level).
        log_path: the log file a generic message points to.
        present: how to show a report; by default a window-modal message box that does not
            block the event loop. Tests pass a recorder.
    """

    def __init__(self, parent: QWidget | None, log_path: Path | None,
                 present: Presenter | None = None) -> None:
        self.parent = parent
        self.log_path = log_path
        self._present = present or self._message_box
        self.reports: list[ErrorReport] = []
        self._open: list[QMessageBox] = []

    def describe(self, error: BaseException, doing: str) -> ErrorReport:
        """The report for ``error`` raised while ``doing`` (e.g. "load the model")."""
        message = user_message(error)
        title = f"Could not {doing}"
        if message is not None:
            return ErrorReport(title, message, True)
        where = f" The details were written to {self.log_path}." if self.log_path else ""
        return ErrorReport(
            title,
            f"Something unexpected went wrong while trying to {doing}. Your chats and documents "
            f"are safe and Bastion keeps running; try again, and if it happens again send the "
            f"log file to whoever looks after this computer.{where}",
            False,
        )

    def report(self, error: BaseException, doing: str) -> ErrorReport:
        """Log ``error`` and show it to the user."""
        report = self.describe(error, doing)
        if report.known:
            log.warning("could not %s: %s", doing, error)
        else:
            log.error("could not %s", doing, exc_info=(type(error), error, error.__traceback__))
        self.reports.append(report)
        self._present(report)
        return report

    def _message_box(self, report: ErrorReport) -> None:
        if any(box.text() == report.text for box in self._open):
            return  # the same failure repeated: one dialog is enough
        box = QMessageBox(QMessageBox.Icon.Warning, report.title, report.text,
                          QMessageBox.StandardButton.Ok, self.parent)
        box.setObjectName("errorDialog")
        box.finished.connect(lambda _result, b=box: self._closed(b))
        self._open.append(box)
        box.open()  # window-modal, but the event loop keeps running

    def _closed(self, box: QMessageBox) -> None:
        if box in self._open:
            self._open.remove(box)
        box.deleteLater()
