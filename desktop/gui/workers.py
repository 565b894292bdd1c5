"""Long work off the GUI thread: a long-lived worker thread that runs jobs one at a time.

After superqt's generator worker (``utils/_qthreading.py``): a job is a function run in the
worker thread with the thread's own context (the ``App`` that owns the engine and the chat
database, or the ``Library`` with its own connection). If it returns a generator, every ``yield``
becomes a ``yielded`` signal and is a cancel point; whatever it returns arrives as ``returned``;
an exception travels as ``errored`` carrying the exception object. Signals reach GUI-thread
receivers through Qt's queued connections, so the GUI thread only ever sees plain records.

One thread per context (not a pool) because a SQLite connection belongs to the thread that
opened it, and the engine serves one request at a time.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Generator
from typing import Any

from PySide6.QtCore import QObject, QThread, Signal

log = logging.getLogger(__name__)

JobFunction = Callable[[Any, "Job"], Any]


class Job(QObject):
    """One unit of work queued on a ``Worker``; its signals arrive in the GUI thread.

    Signals:
        started: the job began running in the worker thread.
        yielded(object): a value the job's generator yielded (or passed to ``report``).
        returned(object): the job's result (a generator's return value, or None).
        errored(object): the exception the job raised.
        finished: always last, after ``returned`` or ``errored`` (or when skipped as cancelled).
    """

    started = Signal()
    yielded = Signal(object)
    returned = Signal(object)
    errored = Signal(object)
    finished = Signal()

    def __init__(self, fn: JobFunction, name: str = "job") -> None:
        super().__init__()
        self.fn = fn
        self.name = name
        self._cancel = threading.Event()
        self._lock = threading.Lock()
        self._canceller: Callable[[], None] | None = None
        self.done = False

    @property
    def cancelled(self) -> bool:
        """Whether ``cancel`` was called (read in the worker thread between steps)."""
        return self._cancel.is_set()

    @property
    def cancel_event(self) -> threading.Event:
        """The event a core generator can take as its ``cancel`` argument."""
        return self._cancel

    def cancel(self) -> None:
        """Ask the job to stop; safe from any thread.

        A job that installed a canceller (``set_canceller``) is stopped through it and keeps
        running to its natural end (the assistant stores an interrupted answer that way);
        otherwise its generator is closed at the next yield.
        """
        with self._lock:
            self._cancel.set()
            canceller = self._canceller
        if canceller is not None:
            canceller()

    def set_canceller(self, canceller: Callable[[], None]) -> None:
        """Called by the job (in the worker thread): how to stop it gently."""
        with self._lock:
            self._canceller = canceller
            already = self._cancel.is_set()
        if already:
            canceller()

    @property
    def soft_cancel(self) -> bool:
        with self._lock:
            return self._canceller is not None

    def report(self, value: object) -> None:
        """Send a progress value from callback-style code (e.g. a copy's byte count)."""
        self.yielded.emit(value)


_STOP = object()


class Worker(QThread):
    """A thread that owns a context object and runs queued jobs against it in order.

    Args:
        context_factory: builds the context in the worker thread (so its SQLite connections
            belong to that thread).
        close_context: called in the worker thread when the worker stops.
        name: shown in logs and thread listings.
    """

    context_failed = Signal(object)

    def __init__(self, context_factory: Callable[[], Any],
                 close_context: Callable[[Any], None] | None = None, name: str = "worker") -> None:
        super().__init__()
        self.setObjectName(name)
        self._factory = context_factory
        self._close = close_context
        self._queue: queue.Queue[Any] = queue.Queue()
        self._current: Job | None = None
        self._current_lock = threading.Lock()
        self.context: Any = None

    # -- GUI-thread side -------------------------------------------------------------------

    def submit(self, fn: JobFunction, name: str = "job",
               connect: Callable[[Job], None] | None = None) -> Job:
        """Queue ``fn(context, job)``.

        ``connect`` is called with the job before it is queued: the thread may run it at once,
        and a signal emitted before anything is connected to it is lost.
        """
        job = Job(fn, name)
        if connect is not None:
            connect(job)
        self._queue.put(job)
        return job

    def current(self) -> Job | None:
        with self._current_lock:
            return self._current

    def cancel_all(self) -> None:
        """Cancel the running job and every queued one."""
        pending: list[Job] = []
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if isinstance(item, Job):
                item.cancel()
            pending.append(item)
        for item in pending:
            self._queue.put(item)
        job = self.current()
        if job is not None:
            job.cancel()

    def stop(self, timeout_ms: int = 30000) -> bool:
        """Cancel everything, close the context in its thread, and wait for the thread."""
        self.cancel_all()
        self._queue.put(_STOP)
        if not self.isRunning():
            return True
        return self.wait(timeout_ms)

    # -- worker-thread side ----------------------------------------------------------------

    def run(self) -> None:
        try:
            self.context = self._factory()
        except BaseException as error:  # reported, then every job fails with the same reason
            log.exception("%s: could not start", self.objectName())
            self.context_failed.emit(error)
            self._drain_failed(error)
            return
        try:
            while True:
                item = self._queue.get()
                if item is _STOP:
                    break
                self._run_job(item)
        finally:
            if self._close is not None:
                try:
                    self._close(self.context)
                except Exception:
                    log.exception("%s: closing failed", self.objectName())

    def _drain_failed(self, error: BaseException) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            item.errored.emit(error)
            item.finished.emit()

    def _run_job(self, job: Job) -> None:
        with self._current_lock:
            self._current = job
        try:
            if job.cancelled and not job.soft_cancel:
                return
            job.started.emit()
            result = job.fn(self.context, job)
            if isinstance(result, Generator):
                result = self._iterate(job, result)
            job.returned.emit(result)
        except BaseException as error:
            if not isinstance(error, Exception):
                raise
            job.errored.emit(error)
        finally:
            with self._current_lock:
                self._current = None
            job.done = True
            job.finished.emit()

    @staticmethod
    def _iterate(job: Job, generator: Generator[Any, None, Any]) -> Any:
        try:
            while True:
                value = next(generator)
                job.yielded.emit(value)
                if job.cancelled and not job.soft_cancel:
                    generator.close()
                    return None
        except StopIteration as stop:
            return stop.value
