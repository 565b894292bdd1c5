"""The window's background: three long-lived worker threads and how views use them.

- core: owns the ``App`` (engine process + chat database) and runs answers, model loads and
  chat edits, one at a time;
- library: owns its own ``Library`` connection (and embedder) and runs indexing;
- files: owns the model ``Catalog`` and runs header reads, hashing and imports.

The GUI thread never touches SQLite, the engine or the embedder: it submits jobs and reacts to
their queued signals. Failures go to the one ``ErrorReporter`` unless the caller handles them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, Signal

from bastion.desktop.gui.error_dialogs import ErrorReporter
from bastion.desktop.gui.workers import Job, Worker

log = logging.getLogger(__name__)

Callback = Callable[[Any], None]
# Handles a job's error; returning True asks for the default report as well.
ErrorHandler = Callable[[BaseException], bool | None]


class Backend(QObject):
    """Starts, feeds and stops the worker threads.

    Args:
        core_factory: builds the ``CoreSession`` (in the core thread).
        library_factory: builds the ``Library`` (in the library thread).
        catalog_factory: builds the model ``Catalog`` (in the files thread).
        reporter: where errors go.
    """

    library_changed = Signal()  # a collection was added, removed or (re)indexed

    def __init__(self, core_factory: Callable[[], Any], library_factory: Callable[[], Any],
                 catalog_factory: Callable[[], Any], reporter: ErrorReporter) -> None:
        super().__init__()
        self.reporter = reporter
        self.core = Worker(core_factory, _close_core, "bastion-core")
        self.library = Worker(library_factory, _close, "bastion-library")
        self.files = Worker(catalog_factory, None, "bastion-files")
        self._jobs: set[Job] = set()  # keeps jobs alive until they finish
        for worker in (self.core, self.library, self.files):
            worker.context_failed.connect(
                lambda error, w=worker: self.reporter.report(error, _START_DOING[w.objectName()]))

    def start(self) -> None:
        for worker in (self.core, self.library, self.files):
            worker.start()

    def stop(self) -> bool:
        """Cancel running work (an answer is stored as interrupted, indexing keeps what it
        committed) and close every context in its own thread. True if all threads ended."""
        ok = True
        for worker in (self.library, self.core, self.files):
            worker.cancel_all()
        for worker in (self.library, self.core, self.files):
            ok = worker.stop() and ok
        return ok

    def busy(self) -> bool:
        return any(w.current() is not None for w in (self.core, self.library, self.files))

    def run(self, worker: Worker, fn: Callable[..., Any], doing: str, *,
            on_result: Callback | None = None, on_yield: Callback | None = None,
            on_error: ErrorHandler | None = None, on_finished: Callable[[], None] | None = None
            ) -> Job:
        """Submit ``fn(context, job)`` to ``worker`` and connect the callbacks.

        Args:
            doing: what the job does, for error dialogs ("load the model").
            on_error: handles the error itself; by default it is reported in a dialog. The
                default report also happens when ``on_error`` returns True (handled partly).
        """
        def errored(error: object) -> None:
            assert isinstance(error, BaseException)
            if on_error is None or on_error(error):
                self.reporter.report(error, doing)

        def connect(job: Job) -> None:
            if on_yield is not None:
                job.yielded.connect(on_yield)
            if on_result is not None:
                job.returned.connect(on_result)
            job.errored.connect(errored)
            job.finished.connect(lambda: finished(job))
            self._jobs.add(job)

        def finished(job: Job) -> None:
            self._jobs.discard(job)
            if on_finished is not None:
                on_finished()

        job = worker.submit(fn, doing, connect)
        return job


_START_DOING = {
    "bastion-core": "start the assistant",
    "bastion-library": "open the document library",
    "bastion-files": "open the models folder",
}


def _close_core(session: Any) -> None:
    if session is not None:
        session.app.close()


def _close(context: Any) -> None:
    close = getattr(context, "close", None)
    if close is not None:
        close()
