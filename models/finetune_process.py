"""Run a fine-tuning in its own process: the application never loads torch for it.

The training process is spawned (never forked: the parent holds SQLite connections and threads),
gets its settings as JSON, and sends its events back as JSON over a pipe — never pickle. Cancel
is a shared flag the loop polls between layers, so a run stops within a second, saves a
checkpoint of its last whole step and exits. The child also stops when its parent is gone.

Usage::

    with FinetuneProcess(config) as run:
        for event in run.events():
            ...  # run.cancel() from another thread (a Cancel button) stops it
"""

from __future__ import annotations

import json
import multiprocessing
import os
from collections.abc import Iterator
from multiprocessing.connection import Connection
from typing import Any

from .finetune_types import (
    Cancelled,
    FinetuneConfig,
    FinetuneError,
    FinetuneEvent,
    Finished,
    TrainingDataError,
    UnsupportedBaseModel,
    event_from_json,
    event_to_json,
)

MAX_MESSAGE_BYTES = 64 << 20  # a Finished event carries the loss curve; nothing is near this
_ERRORS: dict[str, type[FinetuneError]] = {
    cls.__name__: cls for cls in (FinetuneError, TrainingDataError, UnsupportedBaseModel)
}


def _child(config_json: dict[str, Any], conn: Connection, cancel: Any, parent: int) -> None:
    """The training process's main function: run, send every event, report an error as words."""
    from .finetune_model import prepare_environment

    prepare_environment()  # before torch is imported
    from .errors import ModelError
    from .finetune import finetune

    def should_cancel() -> bool:
        return bool(cancel.is_set()) or os.getppid() != parent

    def send(data: dict[str, Any]) -> None:
        conn.send_bytes(json.dumps(data).encode("utf-8"))

    try:
        for event in finetune(FinetuneConfig.from_json(config_json), should_cancel):
            send(event_to_json(event))
    except ModelError as error:
        send({"type": "error", "kind": type(error).__name__, "message": str(error),
              "line": getattr(error, "line", None)})
    except MemoryError:
        send({"type": "error", "kind": "FinetuneError", "message":
              "The training ran out of memory. Lower the tokens per step (batch_tokens) or the "
              "sequence limit, or turn on gradient checkpointing, then resume.", "line": None})
    except Exception as error:  # a bug: say what it was rather than die silently
        send({"type": "error", "kind": "FinetuneError",
              "message": f"The training failed unexpectedly: {type(error).__name__}: {error}",
              "line": None})
    finally:
        conn.close()


class FinetuneProcess:
    """One fine-tuning run in a spawned process (see the module's docstring)."""

    def __init__(self, config: FinetuneConfig) -> None:
        config.check()
        self.config = config
        ctx = multiprocessing.get_context("spawn")
        self._cancel = ctx.Event()
        self._conn, child_conn = ctx.Pipe(duplex=False)
        self._process = ctx.Process(
            target=_child, args=(config.to_json(), child_conn, self._cancel, os.getpid()),
            name="bastion-finetune", daemon=True)
        self._child_conn = child_conn
        self._started = False

    def start(self) -> None:
        """Start the training process (``events`` starts it too)."""
        if not self._started:
            self._process.start()
            self._child_conn.close()  # the child holds its end; EOF then means it is gone
            self._started = True

    @property
    def pid(self) -> int | None:
        """The training process's id once started."""
        return self._process.pid

    def cancel(self) -> None:
        """Ask the run to stop; it yields ``Cancelled`` with its checkpoint shortly after."""
        self._cancel.set()

    def events(self, poll_s: float = 0.5) -> Iterator[FinetuneEvent]:
        """The run's events until ``Finished`` or ``Cancelled``.

        Raises:
            FinetuneError (or TrainingDataError, UnsupportedBaseModel): the run failed; the
                message is the child's own. A crash (out of memory kill…) is reported as such.
        """
        self.start()
        try:
            while True:
                if not self._conn.poll(poll_s):
                    if not self._process.is_alive() and not self._conn.poll(0):
                        raise self._crashed()
                    continue
                try:
                    raw = self._conn.recv_bytes(MAX_MESSAGE_BYTES)
                except (EOFError, OSError):
                    self._process.join(5)
                    raise self._crashed() from None
                event = self._decode(raw)
                yield event
                if isinstance(event, Finished | Cancelled):
                    return
        except GeneratorExit:
            self.cancel()  # the caller walked away: stop the run, keep its checkpoint
            raise

    def _decode(self, raw: bytes) -> FinetuneEvent:
        try:
            data = json.loads(raw)
        except ValueError:
            raise FinetuneError("The training process sent something that is not JSON.") from None
        if not isinstance(data, dict):
            raise FinetuneError("The training process sent something that is not an event.")
        if data.get("type") == "error":
            cls = _ERRORS.get(str(data.get("kind")), FinetuneError)
            message = str(data.get("message", "The training failed."))
            line = data.get("line")
            if cls is TrainingDataError:
                raise TrainingDataError(message, line=line if isinstance(line, int) else None)
            raise cls(message)
        return event_from_json(data)

    def _crashed(self) -> FinetuneError:
        code = self._process.exitcode
        if code is not None and code < 0:
            how = f"was killed by signal {-code}" + (" (out of memory?)" if code == -9 else "")
        else:
            how = f"stopped unexpectedly (exit code {code})"
        return FinetuneError(f"The training process {how}. Its last checkpoint is kept: resume "
                             "the training to continue.")

    def close(self, timeout_s: float = 30.0) -> None:
        """Stop the run if it is still going (it saves a checkpoint) and reap the process."""
        if not self._started:
            self._child_conn.close()
            self._conn.close()
            return
        if self._process.is_alive():
            self.cancel()
            self._process.join(timeout_s)
        if self._process.is_alive():
            self._process.terminate()
            self._process.join(5)
        self._conn.close()

    def __enter__(self) -> FinetuneProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
