"""File-system calls that may never return, bounded: a network mount that stops answering.

A read or a ``stat`` on a stalled NFS or SMB mount blocks in the kernel, and no signal gets a
thread out of it. So the sync makes such calls on a helper thread and waits for progress: the
call reports each step (``tick``), and when none comes for ``stall_s`` seconds the caller gets
``Stalled`` and goes on. The helper thread is abandoned (a daemon; if the mount wakes up it
finishes its call and ends) and the next call gets a fresh one. A slow but moving read — a big
file on a slow share — is never cut: only silence is.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")

Tick = Callable[[], None]

# No progress for this long is a stall: a healthy disk answers a 1 MiB read in far less, even
# under load; a network drive that is gone never does.
STALL_S = 30.0


class Stalled(Exception):
    """A file-system call made no progress for ``seconds``."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"no answer for {seconds:g} s")
        self.seconds = seconds


@dataclass
class _Job(Generic[T]):
    call: Callable[[Tick], T]
    last_tick: float = field(default_factory=time.monotonic)
    done: threading.Event = field(default_factory=threading.Event)
    result: T | None = None
    error: BaseException | None = None

    def tick(self) -> None:
        self.last_tick = time.monotonic()


class StallGuard:
    """Runs calls on one helper thread, giving up on a call that stays silent for ``stall_s``.

    Use from one thread. ``abandoned`` counts the helper threads left behind in a stalled call.
    """

    def __init__(self, stall_s: float | None = None, name: str = "bastion-fs") -> None:
        self.stall_s = STALL_S if stall_s is None else stall_s
        self.name = name
        self.abandoned = 0
        self._jobs: queue.SimpleQueue[_Job[object] | None] | None = None

    def run(self, call: Callable[[Tick], T], stop: threading.Event | None = None) -> T:
        """``call(tick)`` on the helper thread; its result, or its exception.

        Raises:
            Stalled: ``tick`` was not called for ``stall_s`` seconds (or ``stop`` was set while
                waiting): the call is left behind.
        """
        jobs = self._jobs or self._start()
        job: _Job[T] = _Job(call)
        jobs.put(job)  # type: ignore[arg-type]
        while not job.done.wait(min(0.1, self.stall_s)):
            silent = time.monotonic() - job.last_tick
            if silent > self.stall_s or (stop is not None and stop.is_set()):
                self._abandon()
                raise Stalled(self.stall_s)
        if job.error is not None:
            raise job.error
        return job.result  # type: ignore[return-value]

    def close(self) -> None:
        """Let the helper thread end (after its call, if it is in one)."""
        if self._jobs is not None:
            self._jobs.put(None)
            self._jobs = None

    def _abandon(self) -> None:
        self.abandoned += 1
        self.close()

    def _start(self) -> queue.SimpleQueue[_Job[object] | None]:
        jobs: queue.SimpleQueue[_Job[object] | None] = queue.SimpleQueue()
        threading.Thread(target=_serve, args=(jobs,), name=self.name, daemon=True).start()
        self._jobs = jobs
        return jobs


def _serve(jobs: queue.SimpleQueue[_Job[object] | None]) -> None:
    while (job := jobs.get()) is not None:
        try:
            job.result = job.call(job.tick)
        except BaseException as error:  # handed to the caller, never lost
            job.error = error
        finally:
            job.done.set()
