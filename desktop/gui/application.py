"""Starting the window: one instance per user, the real background parts, a clean exit.

A second launch finds the first through a local socket named after the user and the data folder,
asks it to come forward, and exits. The socket is a Unix domain socket (a named pipe on Windows):
it never touches the network.
"""

from __future__ import annotations

import getpass
import hashlib
import logging
import os
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from PySide6.QtCore import QByteArray, QObject, QTimer, Signal
from PySide6.QtNetwork import QLocalServer, QLocalSocket
from PySide6.QtWidgets import QApplication, QWidget

from bastion.desktop.gui.style import apply_style

log = logging.getLogger(__name__)

RAISE_MESSAGE = b"raise\n"
CONNECT_TIMEOUT_MS = 1000


def instance_key(home: Path) -> str:
    """The local socket name for this user and data folder."""
    digest = hashlib.sha256(f"{getpass.getuser()}\0{home}".encode()).hexdigest()[:16]
    return f"bastion-{digest}"


class SingleInstance(QObject):
    """Owns the per-user socket; ``activated`` fires when a second launch asks to come forward."""

    activated = Signal()

    def __init__(self, key: str) -> None:
        super().__init__()
        self.key = key
        self.server: QLocalServer | None = None

    def notify_running(self) -> bool:
        """True if another instance answered (and was asked to come forward)."""
        socket = QLocalSocket()
        socket.connectToServer(self.key)
        if not socket.waitForConnected(CONNECT_TIMEOUT_MS):
            return False
        socket.write(QByteArray(RAISE_MESSAGE))
        socket.waitForBytesWritten(CONNECT_TIMEOUT_MS)
        socket.disconnectFromServer()
        return True

    def listen(self) -> bool:
        """Become the instance; a stale socket left by a crash is removed first."""
        QLocalServer.removeServer(self.key)
        server = QLocalServer(self)
        server.setSocketOptions(QLocalServer.SocketOption.UserAccessOption)
        if not server.listen(self.key):
            log.warning("single-instance socket unavailable: %s", server.errorString())
            return False
        server.newConnection.connect(self._connection)
        self.server = server
        return True

    def _connection(self) -> None:
        assert self.server is not None
        while (socket := self.server.nextPendingConnection()) is not None:
            # The other launch writes one line right after connecting; a short wait is enough
            # and keeps no Python callback attached to a socket Qt may delete.
            ready = socket.bytesAvailable() or socket.waitForReadyRead(CONNECT_TIMEOUT_MS)
            if ready and bytes(socket.readAll().data()).startswith(RAISE_MESSAGE.strip()):
                self.activated.emit()
            socket.abort()

    def close(self) -> None:
        if self.server is not None:
            self.server.close()
            self.server = None


def bring_forward(window: QWidget) -> None:
    window.show()
    window.setWindowState(window.windowState() & ~window.windowState().WindowMinimized)
    window.raise_()
    window.activateWindow()


def real_factories() -> tuple[Callable[[], Any], Callable[[], Any], Callable[[], Any]]:
    """The real core, library and catalog, each built in its own thread."""

    def core() -> Any:
        from bastion.desktop.app import App
        from bastion.desktop.gui.core_tasks import CoreSession

        return CoreSession(App())

    def library() -> Any:
        from bastion.desktop.library import open_library

        return open_library()

    def catalog() -> Any:
        from bastion.desktop.paths import data_paths
        from bastion.models.catalog import Catalog

        return Catalog(data_paths().models_dir)

    return core, library, catalog


def _close_on_signals(window: QWidget) -> None:
    """SIGTERM (logout, shutdown) and Ctrl-C close the window the normal way, so an answer in
    progress is stored and indexing keeps what it finished."""
    for number in (signal.SIGINT, signal.SIGTERM):
        signal.signal(number, lambda *_args: QTimer.singleShot(0, window.close))
    # Python runs signal handlers only when it gets control; Qt's loop is C++, so wake it.
    ticker = QTimer(window)
    ticker.timeout.connect(lambda: None)
    ticker.start(250)


def run(argv: Sequence[str] | None = None, *, load_model: bool = True) -> int:
    """Open the window; returns the exit code. A second launch returns 0 after raising the first."""
    from bastion.desktop.gui.backend import Backend
    from bastion.desktop.gui.error_dialogs import ErrorReporter, setup_logging
    from bastion.desktop.gui.main_window import MainWindow
    from bastion.desktop.heap import settle_heap
    from bastion.desktop.paths import data_paths

    paths = data_paths()
    app = QApplication.instance() or QApplication(list(argv or sys.argv[:1]))
    assert isinstance(app, QApplication)
    app.setApplicationName("Bastion")
    app.setDesktopFileName("bastion")
    instance = SingleInstance(instance_key(paths.home))
    if instance.notify_running():
        print("Bastion is already open; its window was brought forward.", file=sys.stderr)
        return 0
    instance.listen()
    log_path = setup_logging(paths.logs_dir)
    apply_style(app)
    reporter = ErrorReporter(None, log_path)
    core, library, catalog = real_factories()
    backend = Backend(core, library, catalog, reporter)
    window = MainWindow(backend)
    reporter.parent = window
    instance.activated.connect(lambda: bring_forward(window))
    window.warmed_up.connect(settle_heap)
    window.show()
    window.start_when_shown(load_model=load_model)
    _close_on_signals(window)
    try:
        code = app.exec()
    finally:
        if window.closed_cleanly is None:  # the loop ended without a close event
            window.closed_cleanly = backend.stop()
        instance.close()
    if window.closed_cleanly is False:
        # A thread is stuck in work that cannot be interrupted (e.g. llama.cpp loading a huge
        # model). Everything acknowledged is committed, so leave without waiting for it;
        # returning normally would let Qt abort on the running thread.
        log.warning("leaving with a background thread still busy")
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code
