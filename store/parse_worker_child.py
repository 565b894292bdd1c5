"""The code that runs inside a spawned parse worker process.

Kept apart from the pool so the child imports only this, the parsers and their libraries:
spawn starts a fresh interpreter, and every import here is paid at each (re)start.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import signal
import time
from collections.abc import Callable
from dataclasses import replace
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from .parsers.fsread import FileStat
from .parsers.types import ParseOutcome, outcome_to_wire

DEFAULT_PARSE_FUNCTION = "bastion.store.parsers:parse_file"

ParseFunction = Callable[..., ParseOutcome]

# Messages:
#   child -> parent, UTF-8 JSON bytes (the parent never unpickles what a worker of hostile files
#                    sends):
#                    ["ready", pid, startup_seconds] once, then
#                    ["done", task_id, outcome_to_wire(ParseOutcome), restart_after] per task.
#   parent -> child, pickled tuples (the trusted direction):
#                    (task_id, path, max_bytes, max_chars, time_budget_s, expected) per task,
#                    ``expected`` being None or the fields of a ``FileStat``; None to stop.


def out_of_memory_reason(memory_mb: int) -> str:
    """The reason given when a file exhausted the worker's memory cap."""
    return f"ran out of memory (cap {memory_mb} MB)"


def resolve_parse_function(spec: str) -> ParseFunction:
    """Import ``"module:function"`` and return the function."""
    module_name, _, name = spec.partition(":")
    if not module_name or not name:
        raise ValueError(f"parse function must look like 'module:function', not {spec!r}")
    function = getattr(importlib.import_module(module_name), name)
    if not callable(function):
        raise TypeError(f"{spec!r} is not a function")
    return function  # type: ignore[no-any-return]


def _limit_resources(memory_mb: int) -> None:
    try:
        import resource
    except ImportError:  # not on Windows; the timeout still applies there
        return
    cap = memory_mb * 1024 * 1024
    try:
        _soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        if hard != resource.RLIM_INFINITY:
            cap = min(cap, hard)
        resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
    except (ValueError, OSError):
        pass
    # A crashing parser must not litter core dumps of private documents on disk.
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def _warm_up() -> None:
    # Import the parsing libraries now so their import time never counts against a file's timeout.
    import logging

    for name in ("pypdf", "docx", "pptx", "openpyxl", "bs4", "lxml.etree", "charset_normalizer"):
        with contextlib.suppress(ImportError):
            importlib.import_module(name)
    logging.getLogger("pypdf").setLevel(logging.ERROR)


def worker_main(conn: Connection, parse_function: str, memory_mb: int, started: float) -> None:
    """Entry point of a parse worker: parse files sent over ``conn`` until told to stop.

    Args:
        conn: The child end of the pipe to the pool.
        parse_function: ``"module:function"`` to call as
            ``f(path, max_bytes=, max_chars=, time_budget_s=[, expected=])``.
        memory_mb: Address-space cap for this process (Linux/macOS).
        started: ``time.time()`` in the parent when the process was started.
    """
    # Ctrl-C belongs to the parent; it stops workers through the pipe.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _limit_resources(memory_mb)
    function = resolve_parse_function(parse_function)
    _warm_up()
    send(conn, ["ready", os.getpid(), time.time() - started])
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return
        if message is None:
            return
        task_id, path, max_bytes, max_chars, time_budget_s, expected = message
        begun = time.perf_counter()
        limits = {"max_bytes": max_bytes, "max_chars": max_chars, "time_budget_s": time_budget_s}
        if expected is not None:
            limits["expected"] = FileStat(*expected)
        outcome, restart = _run(function, path, limits, memory_mb)
        outcome = replace(outcome, parse_seconds=time.perf_counter() - begun)
        try:
            send(conn, ["done", task_id, outcome_to_wire(outcome), restart])
        except MemoryError:
            send(conn, ["done", task_id, outcome_to_wire(_failed(out_of_memory_reason(memory_mb))), True])
            return
        except (OSError, ValueError):
            return
        if restart:
            return


def send(conn: Connection, message: list[Any]) -> None:
    """One message to the pool as UTF-8 JSON.

    Not ASCII escapes: those cost 6 bytes per CJK character (12 per emoji) where UTF-8 needs
    3 (4), and both ends hold the whole message. "surrogatepass" keeps lone surrogates (from
    undecodable names) intact; ``json.loads`` of bytes decodes with it too.
    """
    conn.send_bytes(json.dumps(message, ensure_ascii=False).encode("utf-8", "surrogatepass"))


def _failed(reason: str) -> ParseOutcome:
    return ParseOutcome(status="failed", reason=reason)


def _run(
    function: ParseFunction, path: Path, limits: dict[str, Any], memory_mb: int
) -> tuple[ParseOutcome, bool]:
    from .parsers import OUT_OF_MEMORY_REASON

    try:
        outcome: Any = function(path, **limits)
    except MemoryError:
        return _failed(out_of_memory_reason(memory_mb)), True
    except Exception as error:
        detail = str(error).strip()[:160] or "no details given"
        return _failed(f"the parser could not read this file ({detail})"), False
    if not isinstance(outcome, ParseOutcome):
        return _failed("the parser returned no result for this file"), False
    if outcome.status == "failed" and outcome.reason == OUT_OF_MEMORY_REASON:
        # Restart after memory exhaustion: the heap may be fragmented or half-freed.
        return _failed(out_of_memory_reason(memory_mb)), True
    return outcome, False
