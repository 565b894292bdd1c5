"""Parsing in spawned worker processes: a hang, a crash or a memory blow-up costs one file.

``ParsePool`` keeps 1–2 long-lived workers (spawn is slow), sends each one file at a time and
polls with timeouts, so the parent never blocks on a worker. A file that takes longer than
``timeout_s`` gets its worker killed and restarted (``failed``); a worker that dies on a file
yields ``crashed``; running out of the memory cap yields ``failed``. Only plain data crosses the
pipe: paths in, ``ParseOutcome`` dataclasses out.

Not thread-safe: use one pool from one thread (the indexing thread).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import multiprocessing
import signal
import time
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import astuple, dataclass, field
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from pathlib import Path
from types import TracebackType

from .errors import StoreError
from .parse_pools import ParseRequest, as_request
from .parse_worker_child import DEFAULT_PARSE_FUNCTION, worker_main
from .parsers.limits import DEFAULT_MAX_BYTES, DEFAULT_MAX_CHARS
from .parsers.types import ParseOutcome, outcome_from_wire

CRASHED_REASON = "the parser crashed on this file"
# Parsers stop and keep what they have at this fraction of the timeout; the kill is the backstop.
_SOFT_BUDGET_FRACTION = 0.75
# How often the parent wakes up while waiting, to check deadlines and liveness.
_POLL_S = 0.25
_MAX_START_FAILURES = 3


@dataclass
class _Task:
    task_id: int
    request: ParseRequest
    deadline: float = 0.0

    @property
    def path(self) -> Path:
        return self.request.path


@dataclass
class _Slot:
    """One worker process and what it is doing."""

    process: BaseProcess | None = None
    conn: Connection | None = None
    ready: bool = False
    started_at: float = 0.0
    task: _Task | None = None
    start_failures: int = 0
    exit_codes: list[int | None] = field(default_factory=list)


class ParsePool:
    """Spawned parse workers with a per-file timeout and memory cap.

    Example:
        >>> with ParsePool(workers=2) as pool:
        ...     for path, outcome in pool.parse_many(paths):
        ...         print(path, outcome.status, outcome.reason)

    Args:
        workers: Number of worker processes (1–8; 2 is plenty on a laptop).
        timeout_s: Wall-clock limit per file. At 75 % of it parsers stop and keep the pages read
            so far (with a warning), so a slow but valid file is partly indexed; at 100 % the
            worker is killed and the file fails.
        memory_mb: Address-space cap per worker (Linux ``RLIMIT_AS``).
        max_bytes: Files larger than this are skipped as too large.
        max_chars: Characters kept per document.
        parse_function: ``"module:function"`` the workers call; tests inject hostile ones.
        start_timeout_s: How long a worker may take to start before it counts as failed.
    """

    def __init__(
        self,
        workers: int = 1,
        timeout_s: float = 60.0,
        memory_mb: int = 1024,
        *,
        max_bytes: int = DEFAULT_MAX_BYTES,
        max_chars: int = DEFAULT_MAX_CHARS,
        parse_function: str = DEFAULT_PARSE_FUNCTION,
        start_timeout_s: float = 60.0,
    ) -> None:
        if not 1 <= workers <= 8:
            raise ValueError("workers must be between 1 and 8")
        if timeout_s <= 0 or memory_mb < 64:
            raise ValueError("timeout_s must be positive and memory_mb at least 64")
        if ":" not in parse_function:
            raise ValueError("parse_function must look like 'module:function'")
        self.timeout_s = timeout_s
        self.memory_mb = memory_mb
        self.max_bytes = max_bytes
        self.max_chars = max_chars
        self.parse_function = parse_function
        self.start_timeout_s = start_timeout_s
        self._budget = timeout_s * _SOFT_BUDGET_FRACTION
        #: Seconds from start() to "ready" for every worker started so far (for benchmarks).
        self.startup_seconds: list[float] = []
        self._context = multiprocessing.get_context("spawn")
        self._slots = [_Slot() for _ in range(workers)]
        self._ids = itertools.count(1)
        self._running = False
        self._closed = False
        self._requeued: deque[ParseRequest] = deque()
        for slot in self._slots:
            self._start(slot)

    # -- public API -------------------------------------------------------------------------

    def parse(self, path: Path | ParseRequest) -> ParseOutcome:
        """Parse one file in a worker and wait for the outcome (bounded by the timeout)."""
        for _, outcome in self.parse_many([path]):
            return outcome
        raise AssertionError("parse_many yields one outcome per path")  # pragma: no cover

    def parse_many(
        self, paths: Iterable[Path | ParseRequest]
    ) -> Iterator[tuple[Path, ParseOutcome]]:
        """Parse many files, keeping every worker busy; outcomes may come out of order.

        ``paths`` is consumed lazily. A ``ParseRequest`` carries what the scan saw of the file;
        the worker then insists on that very file (``parsers.fsread.open_regular_file``). Stopping the iteration early kills the workers still
        busy on abandoned files (they restart on next use).

        Yields:
            ``(path, outcome)`` once for every path.

        Raises:
            StoreError: Workers cannot be started at all (broken installation).
        """
        if self._closed:
            raise StoreError("the parse pool is closed; create a new one")
        if self._running:
            raise RuntimeError("parse_many is already running on this pool")
        self._running = True
        source = iter(paths)
        exhausted = False
        try:
            while True:
                exhausted = self._assign(source, exhausted)
                if exhausted and not any(slot.task for slot in self._slots):
                    return
                yield from self._collect()
        finally:
            self._running = False
            self._requeued.clear()
            for slot in self._slots:
                if slot.task is not None:
                    slot.task = None
                    self._kill(slot)

    def close(self) -> None:
        """Stop the workers (politely, then by force) and release their pipes."""
        if self._closed:
            return
        self._closed = True
        for slot in self._slots:
            if slot.conn is not None and slot.process is not None and slot.process.is_alive():
                with contextlib.suppress(OSError, ValueError):
                    slot.conn.send(None)
        deadline = time.monotonic() + 2.0
        for slot in self._slots:
            if slot.process is not None:
                slot.process.join(max(0.0, deadline - time.monotonic()))
            self._kill(slot)

    def __enter__(self) -> ParsePool:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def __del__(self) -> None:
        # Best effort only: workers are daemons and die with the parent anyway.
        if not getattr(self, "_closed", True):
            self.close()

    # -- worker lifecycle -------------------------------------------------------------------

    def _start(self, slot: _Slot) -> None:
        parent_end, child_end = self._context.Pipe(duplex=True)
        started = time.time()
        process = self._context.Process(
            target=worker_main,
            args=(child_end, self.parse_function, self.memory_mb, started),
            name="bastion-parse-worker",
            daemon=True,
        )
        process.start()
        child_end.close()
        slot.process, slot.conn = process, parent_end
        slot.ready, slot.started_at = False, time.monotonic()

    def _kill(self, slot: _Slot) -> None:
        process, conn = slot.process, slot.conn
        slot.process, slot.conn, slot.ready = None, None, False
        if process is not None:
            if process.is_alive():
                process.kill()
            process.join(5.0)
            slot.exit_codes.append(process.exitcode)
            # ValueError: still running after SIGKILL (stuck in the kernel); let it go.
            with contextlib.suppress(ValueError):
                process.close()
        if conn is not None:
            conn.close()

    def _restart(self, slot: _Slot) -> None:
        self._kill(slot)
        self._start(slot)

    # -- the event loop ---------------------------------------------------------------------

    def _assign(self, source: Iterator[Path | ParseRequest], exhausted: bool) -> bool:
        """Give every idle, ready worker its next file; returns whether ``source`` ran out."""
        for slot in self._slots:
            if slot.process is None:
                self._start(slot)
            if not slot.ready or slot.task is not None:
                continue
            if slot.process is not None and not slot.process.is_alive():
                self._restart(slot)
                continue
            if self._requeued:
                request: ParseRequest | None = self._requeued.popleft()
            else:
                item = None if exhausted else next(source, None)
                request = None if item is None else as_request(item)
            if request is None:
                exhausted = True
                continue
            task = _Task(next(self._ids), request)
            expected = request.expected
            assert slot.conn is not None
            try:
                slot.conn.send(
                    (task.task_id, task.path, self.max_bytes, self.max_chars, self._budget,
                     None if expected is None else astuple(expected))
                )
            except (OSError, ValueError):
                # The worker died while idle: the file goes to the next ready worker.
                self._restart(slot)
                self._requeued.append(task.request)
                continue
            task.deadline = time.monotonic() + self.timeout_s
            slot.task = task
        return exhausted and not self._requeued

    def _collect(self) -> Iterator[tuple[Path, ParseOutcome]]:
        now = time.monotonic()
        waits: list[float] = [_POLL_S]
        objects: list[Connection | int] = []
        for slot in self._slots:
            if slot.process is None or slot.conn is None:
                continue
            objects += [slot.conn, slot.process.sentinel]
            if slot.task is not None and slot.task.deadline:
                waits.append(slot.task.deadline - now)
            elif not slot.ready:
                waits.append(slot.started_at + self.start_timeout_s - now)
        if objects:
            wait(objects, timeout=max(0.0, min(waits)))
        for slot in self._slots:
            yield from self._service(slot)

    def _service(self, slot: _Slot) -> Iterator[tuple[Path, ParseOutcome]]:
        """Read what ``slot`` sent, notice its death or overrun, and yield finished files."""
        if slot.process is None or slot.conn is None:
            return
        while True:
            try:
                if not slot.conn.poll(0):
                    break
                # A worker cannot build a longer message inside its address-space cap.
                raw = slot.conn.recv_bytes(self.memory_mb * 1024 * 1024)
            except (EOFError, OSError):  # closed, or longer than any honest result
                break
            try:
                done = _decode(raw)
            except ValueError as error:
                yield from self._misbehaved(slot, str(error))
                return
            if done is None:  # "ready"
                slot.ready = True
                slot.start_failures = 0
                self.startup_seconds.append(time.monotonic() - slot.started_at)
            else:
                task_id, outcome, restart = done
                task = slot.task
                if task is not None and task.task_id == task_id:
                    slot.task = None
                if restart:
                    # Before yielding: the consumer may stop iterating at any yield.
                    self._restart(slot)
                if task is not None and task.task_id == task_id:
                    yield task.path, outcome
                if restart:
                    return
        if not slot.process.is_alive():
            yield from self._died(slot)
            return
        now = time.monotonic()
        if slot.task is not None and slot.task.deadline and now > slot.task.deadline:
            task, slot.task = slot.task, None
            self._restart(slot)
            yield (
                task.path,
                ParseOutcome(
                    status="failed",
                    reason=f"parsing took longer than {self.timeout_s:g} s (timeout)",
                    parse_seconds=self.timeout_s,
                ),
            )
        elif not slot.ready and now > slot.started_at + self.start_timeout_s:
            self._start_failed(slot, f"it did not start within {self.start_timeout_s:g} s")

    def _misbehaved(self, slot: _Slot, detail: str) -> Iterator[tuple[Path, ParseOutcome]]:
        """A worker sent something that is not a well-formed message: it is not trusted again."""
        task, slot.task = slot.task, None
        self._restart(slot)
        if task is not None:
            yield (
                task.path,
                ParseOutcome(
                    status="failed",
                    reason=f"the parser process sent a malformed result for this file ({detail[:120]})",
                ),
            )

    def _died(self, slot: _Slot) -> Iterator[tuple[Path, ParseOutcome]]:
        assert slot.process is not None
        code = slot.process.exitcode
        was_ready = slot.ready
        task, slot.task = slot.task, None
        if task is not None:
            self._restart(slot)
            yield (
                task.path,
                ParseOutcome(status="crashed", reason=f"{CRASHED_REASON} ({_describe_exit(code)})"),
            )
        elif was_ready:
            self._restart(slot)
        else:
            self._start_failed(slot, f"it exited during start-up ({_describe_exit(code)})")

    def _start_failed(self, slot: _Slot, why: str) -> None:
        slot.start_failures += 1
        self._kill(slot)
        if slot.start_failures >= _MAX_START_FAILURES:
            raise StoreError(
                f"The document parser could not be started: {why}. "
                "Check that Bastion is installed completely (try reinstalling)."
            )
        self._start(slot)


def _describe_exit(code: int | None) -> str:
    if code is None:
        return "no exit status"
    if code < 0:
        try:
            return f"signal {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"exit status {code}"


def _decode(raw: bytes) -> tuple[int, ParseOutcome, bool] | None:
    """A worker's message, checked: None for "ready", (task id, outcome, restart) for "done".

    Raises:
        ValueError: not JSON, or not one of the two message shapes.
    """
    message = json.loads(raw)  # data only: nothing a worker sends can run code here
    if isinstance(message, list) and len(message) == 3 and message[0] == "ready":
        return None
    if isinstance(message, list) and len(message) == 4 and message[0] == "done":
        _, task_id, outcome, restart = message
        if isinstance(task_id, int) and isinstance(restart, bool):
            return task_id, outcome_from_wire(outcome), restart
    raise ValueError("not a ready or done message")
